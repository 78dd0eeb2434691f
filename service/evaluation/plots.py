"""PNG figures of the sweeps (matplotlib, Agg backend: no display needed). Values plotted in percent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Series = Sequence[float]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


def _pct(values: Series) -> list[float]:
    return [100.0 * v for v in values]


def plot_utility(
    path: Path,
    title: str,
    sigmas: Series,
    curves: Mapping[str, tuple[Series, Series | None]],
    exact: Mapping[str, Series],
    chance: float | None,
) -> Path:
    """Metric vs σ: each sampled curve (mean, optional std band) and each exact curve (dashed).

    ``curves`` maps a legend name (e.g. "accuracy (sampled)") to (mean, std); ``exact`` maps a legend name
    to values; ``chance`` draws the 1/C guessing floor. All values are fractions.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=120)
    for name, (mean, std) in curves.items():
        (line,) = ax.plot(sigmas, _pct(mean), label=name, linewidth=1.6)
        if std is not None:
            lo = [100.0 * (m - s) for m, s in zip(mean, std, strict=True)]
            hi = [100.0 * (m + s) for m, s in zip(mean, std, strict=True)]
            ax.fill_between(sigmas, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0)
    for (name, values), style in zip(exact.items(), ("--", "-.", ":"), strict=False):
        ax.plot(sigmas, _pct(values), linestyle=style, color="black", linewidth=1.0, label=name)
    if chance is not None:
        ax.axhline(100.0 * chance, color="grey", linestyle=":", linewidth=1.0, label="chance (1/C)")
    return _finish_sigma_axes(plt, fig, ax, title, path)


def plot_focus(
    path: Path,
    title: str,
    strengths: Series,
    per_class: Mapping[str, Series],
    overall: Mapping[str, Series],
) -> Path:
    """Left: recall of each focused class vs σ_f; right: change of the overall metrics (points)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 4.0), dpi=120)
    for name, values in per_class.items():
        left.plot(strengths, _pct(values), marker="o", markersize=3, label=name)
    left.set_xlabel("σ_f (focus strength)")
    left.set_ylabel("recall of the focused class (%)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    for name, values in overall.items():
        right.plot(strengths, [100.0 * (v - values[0]) for v in values], marker="o", markersize=3, label=name)
    right.axhline(0.0, color="grey", linewidth=0.8)
    right.set_xlabel("σ_f (focus strength)")
    right.set_ylabel("change from σ_f = 0 (points)")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)


def plot_generation(
    path: Path, title: str, sigmas: Series, by_kind: Mapping[str, Series], step_fidelity: Series
) -> Path:
    """Accuracy of the question set vs σ, one line per question kind (and "all"), and the share of
    decoding steps whose token is the unmodulated argmax (dashed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=120)
    for name, values in by_kind.items():
        width = 2.0 if name == "all" else 1.0
        ax.plot(sigmas, _pct(values), marker="o", linewidth=width, label=f"correct: {name}")
    ax.plot(sigmas, _pct(step_fidelity), "k--", marker="x", linewidth=1.0, label="step fidelity")
    return _finish_sigma_axes(plt, fig, ax, title, path)


def plot_questions(path: Path, title: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Accuracy vs σ per task: exact (line), sampled mean (markers), chance (dotted, same colour)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=120)
    for task in dict.fromkeys(str(r["task"]) for r in rows):
        mine = [r for r in rows if r["task"] == task]
        sig = [float(r["sigma"]) for r in mine]
        (line,) = ax.plot(sig, _pct([float(r["accuracy_exact"]) for r in mine]), label=f"{task} (exact)")
        ax.plot(sig, _pct([float(r["accuracy_mean"]) for r in mine]), "o", color=line.get_color(), ms=3)
        ax.axhline(100.0 * float(mine[0]["chance"]), color=line.get_color(), linestyle=":", linewidth=1.0)
    ax.plot([], [], "ko", ms=3, label="sampled mean")
    ax.plot([], [], "k:", label="chance")
    return _finish_sigma_axes(plt, fig, ax, title, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _finish_sigma_axes(plt: Any, fig: Any, ax: Any, title: str, path: Path) -> Path:
    """Label a percentage-vs-σ plot, then save it."""
    ax.set_xlabel("σ (utility noise, logit units)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)
