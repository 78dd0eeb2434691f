"""Device and dtype settings: resolved once, refused with a message naming the setting."""

from __future__ import annotations

import pytest
import torch

from service.errors import ConfigError
from service.models.placement import resolve_device, resolve_dtype

CPU = torch.device("cpu")


def test_auto_device_is_cuda_when_available_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == CPU


@pytest.mark.parametrize("name", ["tpu", "not a device", "mps"])
def test_unknown_device(name):
    with pytest.raises(ConfigError, match=f"device '{name}'"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a host without CUDA")
def test_cuda_refused_without_cuda():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_checked():
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_cpu_runs_float32():
    assert resolve_dtype(None, CPU) == torch.float32
    assert resolve_dtype("auto", CPU) == torch.float32
    assert resolve_dtype("FP32", CPU) == torch.float32


@pytest.mark.parametrize("name", ["fp16", "float16", "bf16", "bfloat16"])
def test_half_precision_needs_cuda(name):
    with pytest.raises(ConfigError, match=f"dtype '{name}' needs a CUDA device"):
        resolve_dtype(name, CPU)


def test_unknown_dtype():
    with pytest.raises(ConfigError, match="dtype 'int3' is not supported"):
        resolve_dtype("int3", CPU)


def test_gpu_dtypes():
    gpu = torch.device("cuda")
    assert resolve_dtype("bf16", gpu) == torch.bfloat16
    assert resolve_dtype("fp16", gpu) == torch.float16
    assert resolve_dtype("fp32", gpu) == torch.float32
