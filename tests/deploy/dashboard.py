"""Read the Grafana dashboard's PromQL: the panels' queries, Grafana variables substituted, metric names used.

Shared by the static dashboard tests and by end-to-end tests that run every dashboard query against a real
Prometheus (`PanelQuery.row` tells which row a query belongs to, e.g. the generation-only row).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "aimserve.json"
#: Title of the row whose panels have data only when the served model generates text.
GENERATION_ROW = "Generation (text-generation models only)"

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
    | {"inf", "nan", "Inf", "NaN"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*(?![\w:])(?!\s*\()")
_VARIABLE = re.compile(r"\$\{?\w+(?::\w+)?\}?")


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel: the row it sits under, the panel title, its refId and PromQL."""

    row: str
    panel: str
    ref_id: str
    expr: str


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    """The dashboard JSON as a dict (raises on invalid JSON)."""
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def iter_panels(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(row title, panel)`` for every non-row panel, including those nested in collapsed rows."""
    row = ""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            row = str(panel.get("title", ""))
            for nested in panel.get("panels", []):
                yield row, nested
        else:
            yield row, panel


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    """Every PromQL target of every panel, in dashboard order."""
    return [
        PanelQuery(row, str(panel.get("title", "")), str(target.get("refId", "")), str(target["expr"]))
        for row, panel in iter_panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def substitute(expr: str, *, rate_interval: str = "5s", window: str = "30s", tier: str = ".*") -> str:
    """``expr`` with the dashboard's variables replaced so Prometheus can run it; raises on unknown ones.

    ``$__rate_interval`` -> ``rate_interval``, ``$window`` (the quality window) -> ``window``,
    ``$tier`` -> the regex ``tier`` (Grafana's "All" is ``.*``).
    """
    values = {"__rate_interval": rate_interval, "window": window, "tier": tier}

    def one(match: re.Match[str]) -> str:
        name = match.group(0).strip("${}").split(":")[0]
        if name not in values:
            raise ValueError(f"unknown dashboard variable {match.group(0)!r} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


def metric_names(expr: str) -> set[str]:
    """Metric (sample) names ``expr`` selects (``rate(aim_x_bucket[5m])`` -> ``{"aim_x_bucket"}``).

    Identifiers outside strings, label matchers, ranges and grouping lists that are neither functions nor
    keywords. Selecting by ``{__name__=...}`` is not understood (the dashboard does not use it).
    """
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    return {name for name in _IDENT.findall(text) if name not in _KEYWORDS}
