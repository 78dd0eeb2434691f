"""Where a model runs and in which floating-point type: resolved once at load time from settings.

Contract: ``device`` is ``None``/``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
``"cuda:N"``. ``dtype`` is ``None``/``"auto"`` (bfloat16 on a GPU that supports it, else float16; float32 on
CPU), or one of ``float32``/``fp32``, ``bfloat16``/``bf16``, ``float16``/``fp16``. Half precision on CPU is
refused with a ConfigError rather than silently widened: the operator asked for something this host does
not do, and CPU kernels for half types are slow or missing.
"""

from __future__ import annotations

import torch

from service.errors import ConfigError

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def resolve_device(device: str | None) -> torch.device:
    """The torch device for the ``device`` setting; ConfigError for an unknown or unavailable one."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"device {device!r} is not a device name; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked for but CUDA is not available on this host")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r} does not exist: this host has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif resolved.type != "cpu":
        raise ConfigError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    return resolved


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The torch dtype for the ``dtype`` setting on ``device``; ConfigError for half precision on CPU."""
    if dtype is None or dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    resolved = _DTYPES.get(dtype.lower())
    if resolved is None:
        raise ConfigError(f"dtype {dtype!r} is not supported; use auto, float32, bfloat16 or float16")
    if device.type == "cpu" and resolved != torch.float32:
        raise ConfigError(f"dtype {dtype!r} needs a CUDA device; on CPU the model runs in float32")
    return resolved
