"""docker-compose.yml, parsed: services, healthchecks, ordering, Redis persistence, mounts, env and ports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from service.tiers import TiersConfig

from .common import (
    CONTRACT_ENV,
    REPO,
    compose,
    dockerfile,
    exposed_port,
    host_port,
    option,
    prometheus_config,
)
from .common import service_env_names as read_env_names

SERVICES = {"aimserve", "redis", "prometheus", "grafana"}
HEALTHCHECK = {
    "type": "object",
    "required": ["test", "interval", "timeout", "retries"],
    "properties": {"test": {"type": "array", "minItems": 2, "prefixItems": [{"enum": ["CMD", "CMD-SHELL"]}]}},
}
SCHEMA = {
    "type": "object",
    "required": ["services", "volumes"],
    "properties": {
        "services": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
                "required": ["healthcheck"],
                "properties": {
                    "healthcheck": HEALTHCHECK,
                    "depends_on": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["condition"],
                            "properties": {
                                "condition": {
                                    "enum": [
                                        "service_started",
                                        "service_healthy",
                                        "service_completed_successfully",
                                    ]
                                }
                            },
                        },
                    },
                    "environment": {"type": "object", "additionalProperties": {"type": "string"}},
                    "volumes": {"type": "array", "items": {"type": "string"}},
                    "command": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "volumes": {"type": "object"},
    },
}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(compose()["services"])


@pytest.fixture(scope="module")
def service_env_names(tmp_path_factory) -> set[str]:
    return read_env_names(tmp_path_factory.mktemp("state"))


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host source of each short-syntax volume (":ro" dropped)."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def interpolated(value: str) -> str:
    """``value`` with compose's ``${VAR:-default}`` / ``${VAR:?msg}`` replaced by the default ("" if none)."""
    return re.sub(
        r"\$\{(\w+)(?::?([-?])([^}]*))?\}", lambda m: m.group(3) if m.group(2) == "-" else "", value
    )


def test_compose_matches_the_schema_and_has_the_four_services(services):
    jsonschema.validate(compose(), SCHEMA)
    assert set(services) == SERVICES


def test_startup_order_waits_for_health(services):
    assert services["aimserve"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    assert "aimserve" in services["prometheus"]["depends_on"]


def test_redis_persists_to_a_named_volume(services):
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    volume = mounts(redis)["/data"]
    assert volume in compose()["volumes"]


def test_service_env_is_what_the_service_reads(services, service_env_names):
    assert service_env_names >= CONTRACT_ENV
    env = services["aimserve"]["environment"]
    assert set(env) <= service_env_names
    assert set(env) == CONTRACT_ENV
    assert host_port(env["REDIS_URL"]) == ("redis", 6379) and "redis" in services["redis"]["image"]
    assert env["AIM_STATE_DIR"] == dockerfile().final.env()["AIM_STATE_DIR"]
    # Secrets come from the operator's .env and are required, never written here.
    for name in ("AIM_SECRET", "AIM_ADMIN_TOKEN", "AIM_METRICS_TOKEN"):
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env[name]), name


def test_ports_and_healthcheck_match_the_image(services):
    port = exposed_port()
    aimserve = services["aimserve"]
    assert [int(interpolated(p).split(":")[-1]) for p in aimserve["ports"]] == [port]
    assert re.search(
        rf"http://127\.0\.0\.1:{port}/(readyz|healthz)'", " ".join(aimserve["healthcheck"]["test"])
    )
    (job,) = prometheus_config()["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"aimserve:{port}"]


def test_bind_mounts_exist_in_the_repo(services):
    for name, service in services.items():
        for source in mounts(service).values():
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} missing"


def test_tiers_are_mounted_as_a_directory_holding_a_valid_file(services):
    aimserve = services["aimserve"]
    tiers = Path(option([interpolated(a) for a in aimserve["command"]], "--tiers"))
    source = mounts(aimserve)[str(tiers.parent)]
    host_dir = REPO / source
    assert host_dir.is_dir()  # a single-file bind mount would miss edits saved by replacing the file
    TiersConfig.model_validate(yaml.safe_load((host_dir / tiers.name).read_text()))


def test_prometheus_uses_the_repo_config_and_gets_the_token_file(services, tmp_path):
    prom = services["prometheus"]
    flags = dict(arg.partition("=")[::2] for arg in prom["command"])
    config_file = flags["--config.file"]
    assert (REPO / mounts(prom)[config_file]).resolve() == REPO / "deploy" / "prometheus" / "prometheus.yml"
    (job,) = prometheus_config()["scrape_configs"]
    credentials = Path(job["authorization"]["credentials_file"])
    assert str(credentials.parent) in prom["tmpfs"]
    assert prom["environment"] == {
        "AIM_METRICS_TOKEN": services["aimserve"]["environment"]["AIM_METRICS_TOKEN"]
    }
    # Run the entrypoint script with the paths moved into tmp_path: it must write the token and pass
    # the command through to prometheus unchanged.
    script = prom["entrypoint"][2].replace("$$", "$")
    script = script.replace(str(credentials.parent), str(tmp_path)).replace("/bin/prometheus", "echo")
    done = subprocess.run(
        ["/bin/sh", "-c", script, "prometheus", *prom["command"]],
        env={"AIM_METRICS_TOKEN": "tok-123", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert (tmp_path / credentials.name).read_text() == "tok-123"
    assert done.stdout.split() == prom["command"]


def test_grafana_gets_the_provisioning_and_the_dashboard(services):
    grafana = services["grafana"]
    volumes = mounts(grafana)
    provisioning = REPO / volumes["/etc/grafana/provisioning"]
    assert {p.name for p in provisioning.iterdir()} >= {"datasources", "dashboards"}
    (provider_file,) = (provisioning / "dashboards").glob("*.yml")
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    dashboards = REPO / volumes[provider["options"]["path"]]
    assert (dashboards / "aimserve.json").is_file()
    (datasource_file,) = (provisioning / "datasources").glob("*.yml")
    (datasource,) = yaml.safe_load(datasource_file.read_text())["datasources"]
    assert host_port(datasource["url"]) == ("prometheus", 9090)
    assert any(p.endswith(":9090") for p in services["prometheus"]["ports"])


def test_every_compose_variable_is_documented_in_the_env_example():
    text = (REPO / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
    example = (REPO / "deploy" / "compose.env.example").read_text()
    documented = set(re.findall(r"^(\w+)=", example, re.MULTILINE))
    assert used == documented
