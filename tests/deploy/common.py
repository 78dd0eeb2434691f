"""Shared readers for the static deployment tests: the repo's files, parsed once per call."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from service.settings import Settings

from .dockerfile import Dockerfile, parse_dockerfile

REPO = Path(__file__).resolve().parents[2]
K8S_BASE = REPO / "deploy" / "k8s" / "base"
GPU_OVERLAY = REPO / "deploy" / "k8s" / "overlays" / "gpu"
#: The environment variables of the contract (shared/spec/api.md, "Running").
CONTRACT_ENV = frozenset({"REDIS_URL", "AIM_STATE_DIR", "AIM_ADMIN_TOKEN", "AIM_SECRET", "AIM_METRICS_TOKEN"})


class _RecordingEnv(dict[str, str]):
    """A real environment mapping that remembers every name looked up."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def service_env_names(tmp: Path) -> set[str]:
    """Every variable `Settings.from_env` reads, recorded from a real call (the service's own list)."""
    env = _RecordingEnv({"AIM_SECRET": "s" * 32, "AIM_STATE_DIR": str(tmp)})
    Settings.from_env(env)
    return env.read


def dockerfile() -> Dockerfile:
    return parse_dockerfile((REPO / "Dockerfile").read_text())


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(REPO / "docker-compose.yml")
    return loaded


def prometheus_config() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(REPO / "deploy" / "prometheus" / "prometheus.yml")
    return loaded


def exposed_port() -> int:
    """The single port the final image stage EXPOSEs."""
    expose = dockerfile().final.last("EXPOSE")
    assert expose is not None, "the final stage has no EXPOSE"
    (port,) = expose.args.split()
    return int(port.split("/")[0])


def option(argv: list[str], name: str) -> str:
    """The value of the last ``name <value>`` in ``argv`` (argparse semantics: the last one wins)."""
    values = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]
    assert values, f"{name} missing from {argv}"
    return values[-1]


def host_port(url: str) -> tuple[str, int]:
    """(host, port) of ``scheme://host:port/...``."""
    match = re.match(r"^[a-z]+://(?:[^@/]*@)?([^:/]+):(\d+)", url)
    assert match, f"no host:port in {url!r}"
    return match.group(1), int(match.group(2))
