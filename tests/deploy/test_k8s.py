"""Kubernetes manifests, parsed and checked against schemas, against each other, the image and the service."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import uvicorn
import yaml

from service.api.server import GracefulServer
from service.settings import Settings
from service.tiers import TiersConfig

from .common import CONTRACT_ENV, GPU_OVERLAY, K8S_BASE, dockerfile, exposed_port, load_yaml, option
from .common import service_env_names as read_env_names
from .k8s_schemas import BY_KIND, DEPLOYMENT

Manifest = dict[str, Any]


def documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.fixture(scope="module")
def objects() -> dict[str, Manifest]:
    """Kind -> the one object of that kind listed in the base kustomization."""
    kustomization = load_yaml(K8S_BASE / "kustomization.yaml")
    found: dict[str, Manifest] = {}
    for resource in kustomization["resources"]:
        for doc in documents(K8S_BASE / resource):
            assert doc["kind"] not in found, f"two {doc['kind']} objects"
            found[doc["kind"]] = doc
    return found


def pod_spec(objects: dict[str, Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = objects["Deployment"]["spec"]["template"]["spec"]
    return spec


def container(objects: dict[str, Manifest]) -> dict[str, Any]:
    (only,) = pod_spec(objects)["containers"]
    return dict(only)


def resolve_port(port: int | str, ctr: dict[str, Any]) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in ctr["ports"] if p["name"] == port]
    return int(number)


def subset(small: dict[str, str], big: dict[str, str]) -> bool:
    return all(big.get(k) == v for k, v in small.items())


def test_kustomization_lists_every_manifest_and_each_validates(objects):
    listed = set(load_yaml(K8S_BASE / "kustomization.yaml")["resources"])
    on_disk = {p.name for p in K8S_BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert set(objects) == set(BY_KIND)
    for kind, obj in objects.items():
        jsonschema.validate(obj, BY_KIND[kind])


def test_schema_rejects_a_subpath_mount_and_a_root_pod(objects):
    bad = copy.deepcopy(objects["Deployment"])
    bad["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["subPath"] = "tiers.yaml"
    with pytest.raises(jsonschema.ValidationError, match="subPath"):
        jsonschema.validate(bad, DEPLOYMENT)
    bad = copy.deepcopy(objects["Deployment"])
    bad["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = False
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, DEPLOYMENT)


def test_probes_hit_readyz_and_healthz_on_the_image_port(objects):
    ctr = container(objects)
    port = exposed_port()
    assert [resolve_port(p["containerPort"], ctr) for p in ctr["ports"]] == [port]
    probes = {name: ctr[name]["httpGet"] for name in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    assert {resolve_port(p["port"], ctr) for p in probes.values()} == {port}


def test_graceful_drain_outlasts_prestop_and_uvicorn_shutdown(objects):
    command = container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    # The deployment does not set AIM_SHUTDOWN_GRACE_S, so the default grace applies; uvicorn's own
    # timeout is what GracefulServer gives it (grace + the margin for the final stream events).
    assert "AIM_SHUTDOWN_GRACE_S" not in {e["name"] for e in container(objects)["env"]}
    config = uvicorn.Config(app=None)
    GracefulServer(config, Settings.shutdown_grace_s)
    needed = int(command[1]) + int(config.timeout_graceful_shutdown or 0)
    assert pod_spec(objects)["terminationGracePeriodSeconds"] >= needed + 5


def test_pod_runs_as_the_image_user(objects):
    user = dockerfile().final.last("USER")
    assert user is not None
    assert pod_spec(objects)["securityContext"]["runAsUser"] == int(user.args.split(":")[0])


def test_env_is_what_the_service_reads_and_secrets_exist(objects, tmp_path):
    env = container(objects)["env"]
    names = {e["name"] for e in env}
    assert names == CONTRACT_ENV | {"OMP_NUM_THREADS"}  # the one torch (its OpenMP runtime) reads
    assert names - {"OMP_NUM_THREADS"} <= read_env_names(tmp_path)
    secret = objects["Secret"]
    for entry in env:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == secret["metadata"]["name"]
            assert ref["key"] in secret["stringData"]
    for name in ("AIM_SECRET", "AIM_ADMIN_TOKEN", "REDIS_URL"):
        assert "secretKeyRef" in next(e for e in env if e["name"] == name)["valueFrom"], name


def test_torch_threads_match_the_cpu_request(objects):
    """One torch thread per requested CPU: torch's default (one per node core) would oversubscribe."""
    ctr = container(objects)
    threads = next(e["value"] for e in ctr["env"] if e["name"] == "OMP_NUM_THREADS")
    assert int(threads) == int(ctr["resources"]["requests"]["cpu"])


def test_secret_is_a_template_of_placeholders(objects):
    values = objects["Secret"]["stringData"]
    assert set(values) == {"AIM_SECRET", "AIM_ADMIN_TOKEN", "AIM_METRICS_TOKEN", "REDIS_URL"}
    assert all("REPLACE" in v for v in values.values())


def test_tiers_configmap_is_mounted_as_a_directory_at_the_tiers_path(objects):
    ctr = container(objects)
    tiers = Path(option(ctr["args"], "--tiers"))
    (volume,) = [v for v in pod_spec(objects)["volumes"] if "configMap" in v]
    configmap = objects["ConfigMap"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    (mount,) = [m for m in ctr["volumeMounts"] if m["name"] == volume["name"]]
    assert "subPath" not in mount and Path(mount["mountPath"]) == tiers.parent
    assert "items" not in volume["configMap"]
    TiersConfig.model_validate(yaml.safe_load(configmap["data"][tiers.name]))
    assert option(ctr["args"], "--model")


def test_selectors_match_the_pods(objects):
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert subset(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    assert subset(objects["Service"]["spec"]["selector"], pod_labels)
    assert subset(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"], pod_labels)


def test_service_targets_the_container_port(objects):
    ctr = container(objects)
    (port,) = objects["Service"]["spec"]["ports"]
    assert resolve_port(port["targetPort"], ctr) == exposed_port()


def test_service_monitor_selects_the_service_and_sends_the_metrics_token(objects):
    service, monitor = objects["Service"], objects["ServiceMonitor"]
    assert subset(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    credentials = endpoint["authorization"]["credentials"]
    assert credentials["name"] == objects["Secret"]["metadata"]["name"]
    assert credentials["key"] in objects["Secret"]["stringData"]


def test_hpa_scales_the_deployment_and_pdb_leaves_room_to_evict(objects):
    deployment, hpa, pdb = (
        objects["Deployment"],
        objects["HorizontalPodAutoscaler"],
        objects["PodDisruptionBudget"],
    )
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        deployment["kind"],
        deployment["metadata"]["name"],
    )
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert deployment["spec"]["replicas"] >= hpa["spec"]["minReplicas"]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    if cpu:  # Utilization is relative to the request: there must be one.
        assert container(objects)["resources"]["requests"]["cpu"]


def merge(base: Any, patch: Any) -> Any:
    """A strategic merge of the subset kustomize applies here: maps merge, lists of named maps by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and all("name" in x for x in base + patch):
        named = {x["name"]: x for x in base}
        merged = [merge(named[x["name"]], x) if x["name"] in named else x for x in patch]
        return merged + [x for x in base if x["name"] not in {p["name"] for p in patch}]
    return patch


def test_gpu_overlay_patches_the_deployment_with_one_gpu(objects):
    kustomization = load_yaml(GPU_OVERLAY / "kustomization.yaml")
    assert [(GPU_OVERLAY / r).resolve() for r in kustomization["resources"]] == [K8S_BASE.resolve()]
    (image,) = kustomization["images"]
    assert image["name"] == container(objects)["image"] and "cu" in image["newTag"]
    (patch_ref,) = kustomization["patches"]
    target = patch_ref["target"]
    deployment = objects["Deployment"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    patch = load_yaml(GPU_OVERLAY / patch_ref["path"])
    patched = merge(deployment, patch)
    jsonschema.validate(patched, DEPLOYMENT)
    (ctr,) = patched["spec"]["template"]["spec"]["containers"]
    assert ctr["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert ctr["readinessProbe"] == container(objects)["readinessProbe"]  # the merge kept the base fields
    # torch threads follow the overlay's CPU request, not the base's; the env lists merge by name
    threads = next(e["value"] for e in ctr["env"] if e["name"] == "OMP_NUM_THREADS")
    assert int(threads) == int(ctr["resources"]["requests"]["cpu"])
    assert {e["name"] for e in ctr["env"]} == {e["name"] for e in container(objects)["env"]}
