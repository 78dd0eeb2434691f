"""Keyed, counter-based Gaussian noise, generated vectorised for a whole batch on the logits' device.

A row's noise is a pure function of its 64-bit key (two 32-bit words) and the element's index, never of
the batch it travels in or of any generator state: the same tenant sending the same input gets the same
noise on every replica, and rows of other tenants or other inputs get independent noise.

Construction: counter = index * golden + k1; h = lowbias32(lowbias32(counter) ^ k2) (Wellons' two-round
multiply/xorshift hash, applied twice so that k2 passes through a full hash and a single-bit change of
either key word changes about half of the output bits); the top 24 bits m give (2m + 1) / 2^24 - 1, an exact
float32 strictly inside (-1, 1), which ``erfinv`` maps to N(0, 1). Values are float32 and bounded by
|z| < 5.4 (the 24-bit grid's extreme quantile), far beyond the tails that matter for noise on logits.
Uniforms use the top 23 bits, (m + 0.5) / 2^23, whose largest value 1 - 2^-24 is exact in float32 (24 bits
would round (2^24 - 0.5) / 2^24 up to 1.0).

All arithmetic is int32 with two's-complement wrap-around, the behaviour of torch's integer kernels on
CPU and CUDA. Right shifts are masked to act as logical shifts.

Small CPU tensors (key derivation is always small: one key per row) take a NumPy uint32 path computing the
same bits: a torch op costs about 5 us of dispatch here, a hash is 11 of them, and deriving a step's keys
was 0.35 ms for one row (`bench/modulation.py`, fixed cost). Large or accelerator tensors stay in torch,
whose kernels are multi-threaded. `tests/modulation/test_noise_paths.py` checks the two paths bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch

_GOLDEN = -1640531535  # 0x9E3779B1 as int32: spreads consecutive indices over the 32-bit ring
_M1 = 0x7FEB352D
_M2 = -2073254261  # 0x846CA68B as int32
_U24 = 1.0 / 16777216.0
_U23 = 1.0 / 8388608.0
# Up to this many elements a CPU hash runs in NumPy (single-threaded, ~1 us per op) rather than torch
# (~5 us per op, two threads); measured crossover between 32 x 1,000 and 8 x 4,096 on two cores.
_NUMPY_MAX_ELEMENTS = 1 << 14

_U32 = npt.NDArray[np.uint32]
T = TypeVar("T", torch.Tensor, _U32)


def _xorshift_(x: torch.Tensor, shift: int, scratch: torch.Tensor) -> None:
    """x ^= x >>> shift, in place, using ``scratch`` (same shape and dtype) to avoid an allocation."""
    torch.bitwise_right_shift(x, shift, out=scratch)
    scratch.bitwise_and_((1 << (32 - shift)) - 1)
    x.bitwise_xor_(scratch)


def _use_numpy(x: torch.Tensor, elements: int | None = None) -> bool:
    return x.device.type == "cpu" and (x.numel() if elements is None else elements) <= _NUMPY_MAX_ELEMENTS


def _u32(x: torch.Tensor) -> _U32:
    """A fresh uint32 NumPy array with the bits of int32 tensor ``x`` (on the CPU)."""
    return x.to(torch.int32).contiguous().numpy().view(np.uint32).copy()


def _as_tensor(a: _U32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).view(np.int32))


def _np_lowbias32_(a: _U32) -> _U32:
    """lowbias32 in place on a uint32 array (NumPy's uint32 shifts are logical, products wrap)."""
    a ^= a >> np.uint32(16)
    a *= np.uint32(_M1)
    a ^= a >> np.uint32(15)
    a *= np.uint32(_M2 & 0xFFFFFFFF)
    a ^= a >> np.uint32(16)
    return a


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A fresh int32 tensor holding lowbias32(x) for an int32 tensor ``x`` of any shape."""
    if _use_numpy(x):
        return _as_tensor(_np_lowbias32_(_u32(x)))
    return _torch_mix32(x)


def _torch_mix32(x: torch.Tensor) -> torch.Tensor:
    y = x.to(torch.int32, copy=True)
    scratch = torch.empty_like(y)
    _xorshift_(y, 16, scratch)
    y.mul_(_M1)
    _xorshift_(y, 15, scratch)
    y.mul_(_M2)
    _xorshift_(y, 16, scratch)
    return y


def _keyed_bits24(keys: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(R, N) int32 in [0, 2^24): the top 24 hash bits of each (row key, element index) counter.

    ``keys``: (R, 2) one key per row, or (R, N, 2) one key per element."""
    if _use_numpy(keys, keys.shape[0] * index.shape[-1]):
        return _np_keyed_bits24(keys, index)
    return _torch_keyed_bits24(keys, index)


def _torch_keyed_bits24(keys: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    k1 = keys[..., 0] if keys.dim() == 3 else keys[:, 0:1]
    k2 = keys[..., 1] if keys.dim() == 3 else keys[:, 1:2]
    x = index.mul(_GOLDEN)
    x = x.add_(k1) if x.dim() == 2 else x + k1
    scratch = torch.empty_like(x)
    _lowbias32_(x, scratch)
    x.bitwise_xor_(k2)
    _lowbias32_(x, scratch)
    torch.bitwise_right_shift(x, 8, out=scratch)
    return scratch.bitwise_and_(0xFFFFFF)


def _np_keyed_bits24(keys: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`_keyed_bits24` in NumPy: the same bits, for small CPU batches."""
    k = _u32(keys)
    k1, k2 = (k[..., 0], k[..., 1]) if k.ndim == 3 else (k[:, 0:1], k[:, 1:2])
    x = _u32(index) * np.uint32(_GOLDEN & 0xFFFFFFFF) + k1
    _np_lowbias32_(x)
    x ^= k2
    _np_lowbias32_(x)
    return _as_tensor(x >> np.uint32(8))


def _lowbias32_(x: torch.Tensor, scratch: torch.Tensor) -> None:
    _xorshift_(x, 16, scratch)
    x.mul_(_M1)
    _xorshift_(x, 15, scratch)
    x.mul_(_M2)
    _xorshift_(x, 16, scratch)


def bits_to_uniform(bits24: torch.Tensor) -> torch.Tensor:
    """int32 in [0, 2^24) -> float32 (m' + 0.5) / 2^23 with m' = m >> 1: in [2^-24, 1 - 2^-24], exactly."""
    half = torch.bitwise_right_shift(bits24, 1)
    return half.to(torch.float32).add_(0.5).mul_(_U23)


def bits_to_centered(bits24: torch.Tensor) -> torch.Tensor:
    """int32 in [0, 2^24) -> float32 (2m + 1) / 2^24 - 1, exact, in [-1 + 2^-24, 1 - 2^-24]."""
    return bits24.to(torch.float32).mul_(2.0 * _U24).add_(_U24 - 1.0)


def keyed_uniform(keys: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Uniform noise on the open interval (0, 1) (never 0.0 or 1.0), keyed like `keyed_normal`; (R, N)."""
    return bits_to_uniform(_keyed_bits24(keys, index))


def keyed_normal(keys: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Standard normal noise keyed by row and element index.

    Args:
        keys: (R, 2) int32, the two key words of each row, or (R, N, 2) of each element.
        index: int32 element counters, either (N,) shared by every row or (R, N) per row.

    Returns:
        (R, N) float32 on ``keys.device``: entry [r, n] depends only on (keys[r], index[..., n]).
    """
    # z = sqrt(2) * erfinv(2u - 1) with u = (m + 0.5) / 2^24.
    return bits_to_centered(_keyed_bits24(keys, index)).erfinv_().mul_(math.sqrt(2.0))


def derive_stream_keys(keys: torch.Tensor, stream: int, position: torch.Tensor | None) -> torch.Tensor:
    """Per-row keys for one noise stream (utility, focus, ...) at one decoding position.

    Args:
        keys: (R, 2) int32 base keys.
        stream: a small constant naming the stream, so streams of one row are independent.
        position: (R,) int32/int64 decoding positions, or None for single-shot outputs.

    Returns:
        (R, 2) int32, a fresh tensor.
    """
    if keys.device.type == "cpu":  # one key per row: always small
        pos = None if position is None else _u32(position)
        k = _u32(keys)
        k1, k2 = _derive_words(k[:, 0], k[:, 1], stream, pos, _np_mix32)
        return _as_tensor(np.stack((k1, k2), axis=1))
    pos_t = None if position is None else position.to(torch.int32)
    t1, t2 = _derive_words(keys[:, 0], keys[:, 1], stream, pos_t, _torch_mix32)
    return torch.stack((t1, t2), dim=1)


def _np_mix32(a: _U32) -> _U32:
    return _np_lowbias32_(a.copy())


def _derive_words(w0: T, w1: T, stream: int, position: T | None, mix: Callable[[T], T]) -> tuple[T, T]:
    """The two derived key words; written once with operators that mean the same on int32 tensors and
    uint32 arrays (wrapping + and ^), so both paths compute identical bits."""
    salt = mix(w0 * 0 + stream)
    if position is not None:
        salt = mix(salt ^ mix(position))
    # Each derived word goes through two full hashes that both base words enter.
    a = mix(w0 ^ salt)
    k1 = mix(a + w1)
    k2 = mix(mix(w1 ^ mix(salt + 0x5BD1E995)) ^ a)
    return k1, k2
