"""The vLLM engine's settings, read once from the environment (``AIM_ENGINE=vllm`` only).

- ``AIM_VLLM_URL``: an already running vLLM server (``http://host:port``) to use instead of starting one;
  it must have been started with our logits processor (docs/deployment.md). Unset -> the gateway starts
  and supervises its own vLLM on a free loopback port.
- ``AIM_VLLM_PORT``: the loopback port of the supervised vLLM (default 0: any free port); a fixed one lets
  Prometheus scrape vLLM's own ``/metrics`` beside ours.
- ``AIM_VLLM_PYTHON``: the interpreter of vLLM's environment (default ``.venv-vllm/bin/python``, what
  ``make setup-vllm`` builds).
- ``AIM_VLLM_KV_CACHE_GIB``: KV-cache memory of a CPU build in GiB (default 2; vLLM's own default
  reserves 90% of RAM).
- ``AIM_VLLM_TENSOR_PARALLEL``: tensor-parallel size (GPUs per model, default 1).
- ``AIM_VLLM_DTYPE``: ``float32`` (default; keyed reproducibility needs batch-invariant logits, which
  bfloat16 on CPU is not) or ``bfloat16`` / ``float16`` (GPUs; see docs/deployment.md).
- ``AIM_VLLM_EAGER``: ``1`` (default) starts vLLM with ``--enforce-eager`` (starts in ~25 s on a CPU instead
  of ~80 s); ``0`` lets a GPU build capture CUDA graphs (faster decoding, slower start).
- ``AIM_VLLM_ARGS``: further arguments for vLLM's server, split like a shell line (e.g.
  ``--gpu-memory-utilization 0.85 --max-model-len 8192``).
- ``AIM_VLLM_START_TIMEOUT_S``: how long a start may take before it counts as failed (default 900 s).
- ``AIM_VLLM_STALL_S``: a stream that sends nothing for this long is ended with a 503 and the server is
  treated as hung (default 60 s).
- ``AIM_VLLM_SAMPLE_SHARE``: the share of requests (evenly spread, 0 to 1, default 0.125) that vLLM asks for
  the top 128 raw logits per step, which feed the tier's traffic sample (recalibration); the others ask for
  the top 1 (live fidelity only). vLLM returns k logits for every step of a request, detokenized and sent as
  JSON, so k costs tokens/s: at 8 clients, -15 to -19% for k = 20 and -25 to -32% for k = 128 against k = 1
  (bench/results/vllm_logprobs*.json); 0.125 pays about 3-4%.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service.errors import ConfigError
from service.settings import _float, _int, _opt

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True, slots=True)
class VllmSettings:
    url: str | None = None
    port: int = 0
    python: Path = Path(".venv-vllm/bin/python")
    kv_cache_gib: int = 2
    tensor_parallel: int = 1
    dtype: str = "float32"
    eager: bool = True
    extra_args: tuple[str, ...] = ()
    start_timeout_s: float = 900.0
    stall_s: float = 60.0
    sample_share: float = 0.125

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> VllmSettings:
        env = os.environ if environ is None else environ
        url = _opt(env, "AIM_VLLM_URL")
        if url is not None and not url.startswith(("http://", "https://")):
            raise ConfigError(f"AIM_VLLM_URL={url!r} must start with http:// or https://")
        dtype = _opt(env, "AIM_VLLM_DTYPE") or "float32"
        if dtype not in DTYPES:
            raise ConfigError(f"AIM_VLLM_DTYPE={dtype!r} must be one of {', '.join(DTYPES)}")
        return cls(
            url=url.rstrip("/") if url else None,
            port=_int(env, "AIM_VLLM_PORT", 0, lo=0, hi=65535),
            python=Path(_opt(env, "AIM_VLLM_PYTHON") or ".venv-vllm/bin/python"),
            kv_cache_gib=_int(env, "AIM_VLLM_KV_CACHE_GIB", 2, lo=1, hi=4096),
            tensor_parallel=_int(env, "AIM_VLLM_TENSOR_PARALLEL", 1, lo=1, hi=64),
            dtype=dtype,
            eager=_int(env, "AIM_VLLM_EAGER", 1, lo=0, hi=1) == 1,
            extra_args=tuple(shlex.split(_opt(env, "AIM_VLLM_ARGS") or "")),
            start_timeout_s=_float(env, "AIM_VLLM_START_TIMEOUT_S", 900.0, lo=10.0, hi=7200.0),
            stall_s=_float(env, "AIM_VLLM_STALL_S", 60.0, lo=1.0, hi=3600.0),
            sample_share=_float(env, "AIM_VLLM_SAMPLE_SHARE", 0.125, lo=0.0, hi=1.0),
        )
