"""The vLLM deployment, parsed: compose override, k8s overlays (CPU, GPU) and the vLLM image.

What matters is checked against the other side: only the gateway reaches vLLM (compose: an internal network
and no published port; k8s: a NetworkPolicy whose allowed pods are exactly the gateway's), the gateway's
variables are read by the service, vLLM loads our logits processor, and GPUs match tensor parallelism.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import yaml

from service.serving.generation.vllm.config import VllmSettings
from service.serving.generation.vllm.supervisor import PROCESSOR, VllmChild

from .common import REPO, load_yaml
from .k8s_schemas import DEPLOYMENT
from .test_k8s import documents, merge

OVERLAY = REPO / "deploy" / "k8s" / "overlays" / "vllm"
GPU = REPO / "deploy" / "k8s" / "overlays" / "vllm-gpu"
BASE_DEPLOYMENT = REPO / "deploy" / "k8s" / "base" / "deployment.yaml"


def overlay_objects() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in documents(OVERLAY / "vllm.yaml")}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_compose_override_keeps_vllm_private_to_the_gateway() -> None:
    override = yaml.safe_load((REPO / "deploy" / "compose.vllm.yml").read_text())
    vllm, gateway = override["services"]["vllm"], override["services"]["aimserve"]
    assert "ports" not in vllm and vllm["networks"] == ["engine"]
    assert override["networks"]["engine"]["internal"] is True
    assert "engine" in gateway["networks"]
    assert gateway["environment"]["AIM_ENGINE"] == "vllm"
    url = gateway["environment"]["AIM_VLLM_URL"]
    assert VllmSettings.from_env({"AIM_VLLM_URL": url}).url == "http://vllm:8000"
    assert gateway["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert (REPO / vllm["build"]["dockerfile"]).is_file()
    preset_mount = "presets:/var/lib/aimserve/presets"
    assert preset_mount in gateway["volumes"] and preset_mount + ":ro" in vllm["volumes"]


def test_vllm_image_loads_our_processor_and_copies_what_it_imports() -> None:
    text = (REPO / "deploy" / "vllm" / "Dockerfile").read_text()
    assert PROCESSOR in text and "--generation-config" in text
    copied = ("service/modulation", "service/serving/generation", "service/errors.py", "service/limits.py")
    for path in copied:
        assert path in text and (REPO / path).exists()
    assert "USER 10001" in text
    # What the supervisor gives its own child, the image gives every deployment: Model Runner V1 (our
    # processor's interface) and the raw top logits the gateway reads per step.
    env = VllmChild(REPO, "m", VllmSettings(), max_num_seqs=1).environment()
    assert env["VLLM_USE_V2_MODEL_RUNNER"] == "0" and "VLLM_USE_V2_MODEL_RUNNER=0" in text
    cmd = VllmChild(REPO, "m", VllmSettings(), max_num_seqs=1).command(8000)
    for flag in ("--logprobs-mode", "--max-logprobs"):
        value = cmd[cmd.index(flag) + 1]
        assert f'"{flag}", "{value}"' in text, flag


def test_k8s_overlay_lets_only_the_gateway_reach_vllm() -> None:
    kustomization = load_yaml(OVERLAY / "kustomization.yaml")
    assert "../../base" in kustomization["resources"] and "vllm.yaml" in kustomization["resources"]
    objs = overlay_objects()
    pod_labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert objs["Service"]["spec"]["selector"].items() <= pod_labels.items()
    policy = objs["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    allowed = source["podSelector"]["matchLabels"]
    (patch_ref,) = kustomization["patches"]
    gateway = merge(load_yaml(BASE_DEPLOYMENT), load_yaml(OVERLAY / patch_ref["path"]))
    jsonschema.validate(gateway, DEPLOYMENT)
    assert allowed.items() <= gateway["spec"]["template"]["metadata"]["labels"].items()
    (ctr,) = gateway["spec"]["template"]["spec"]["containers"]
    env = env_of(ctr)
    assert env["AIM_ENGINE"] == "vllm" and "AIM_SECRET" in {e["name"] for e in ctr["env"]}  # base env kept
    port = objs["Service"]["spec"]["ports"][0]["port"]
    assert env["AIM_VLLM_URL"] == f"http://{objs['Service']['metadata']['name']}:{port}"
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]


def test_gpu_overlay_gives_vllm_as_many_gpus_as_tensor_parallel_ranks() -> None:
    kustomization = load_yaml(GPU / "kustomization.yaml")
    assert [(GPU / r).resolve() for r in kustomization["resources"]] == [OVERLAY.resolve()]
    (patch_ref,) = kustomization["patches"]
    patched = merge(overlay_objects()["Deployment"], load_yaml(GPU / patch_ref["path"]))
    (ctr,) = patched["spec"]["template"]["spec"]["containers"]
    args = dict(a.removeprefix("--").split("=", 1) for a in ctr["args"] if "=" in a)
    gpus = ctr["resources"]["limits"]["nvidia.com/gpu"]
    assert int(args["tensor-parallel-size"]) == gpus == ctr["resources"]["requests"]["nvidia.com/gpu"]
    assert "--enforce-eager" not in ctr["args"]  # CUDA graphs on a GPU
    assert env_of(ctr)["VLLM_USE_V2_MODEL_RUNNER"] == "0"  # a GPU build would pick V2 by itself
    assert env_of(ctr)["VLLM_CPU_KVCACHE_SPACE"]  # the merge kept the overlay's env
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/health"  # the merge kept the overlay's probes
