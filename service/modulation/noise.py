"""Keyed, counter-based Gaussian noise, generated vectorised for a whole batch on the logits' device.

A row's noise is a pure function of its 64-bit key (two 32-bit words) and the element's index, never of
the batch it travels in or of any generator state: the same tenant sending the same input gets the same
noise on every replica, and rows of other tenants or other inputs get independent noise.

Construction: counter = index * golden + k1; a two-round multiply/xorshift integer hash (Wellons'
"lowbias32", with k2 mixed in between the rounds) gives 32 well-mixed bits; their top 24 bits give a
uniform on (0, 1) strictly inside the interval; the inverse normal CDF (via ``erfinv``) maps it to N(0, 1).
Values are float32 and bounded by |z| < 5.4 (the 24-bit grid's extreme quantile), which is far beyond the
tails that matter for noise on logits.

All arithmetic is int32 with two's-complement wrap-around, the behaviour of torch's integer kernels on
CPU and CUDA. Right shifts are masked to act as logical shifts.
"""

from __future__ import annotations

import math

import torch

_GOLDEN = -1640531535  # 0x9E3779B1 as int32: spreads consecutive indices over the 32-bit ring
_M1 = 0x7FEB352D
_M2 = -2073254261  # 0x846CA68B as int32
_U24 = 1.0 / 16777216.0


def _xorshift_(x: torch.Tensor, shift: int, scratch: torch.Tensor) -> None:
    """x ^= x >>> shift, in place, using ``scratch`` (same shape and dtype) to avoid an allocation."""
    torch.bitwise_right_shift(x, shift, out=scratch)
    scratch.bitwise_and_((1 << (32 - shift)) - 1)
    x.bitwise_xor_(scratch)


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A fresh int32 tensor holding lowbias32(x) for an int32 tensor ``x`` of any shape."""
    y = x.to(torch.int32, copy=True)
    scratch = torch.empty_like(y)
    _xorshift_(y, 16, scratch)
    y.mul_(_M1)
    _xorshift_(y, 15, scratch)
    y.mul_(_M2)
    _xorshift_(y, 16, scratch)
    return y


def _keyed_bits24(keys: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(R, N) int32 in [0, 2^24): the top 24 hash bits of each (row key, element index) counter."""
    k1 = keys[:, 0:1]
    k2 = keys[:, 1:2]
    x = index.mul(_GOLDEN)
    x = x.add_(k1) if x.dim() == 2 else x + k1
    scratch = torch.empty_like(x)
    _xorshift_(x, 16, scratch)
    x.mul_(_M1)
    x.bitwise_xor_(k2)
    _xorshift_(x, 15, scratch)
    x.mul_(_M2)
    _xorshift_(x, 16, scratch)
    torch.bitwise_right_shift(x, 8, out=scratch)
    return scratch.bitwise_and_(0xFFFFFF)


def keyed_uniform(keys: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Uniform noise on the open interval (0, 1), keyed like `keyed_normal`; (R, N) float32."""
    return _keyed_bits24(keys, index).to(torch.float32).add_(0.5).mul_(_U24)


def keyed_normal(keys: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Standard normal noise keyed by row and element index.

    Args:
        keys: (R, 2) int32, the two key words of each row.
        index: int32 element counters, either (N,) shared by every row or (R, N) per row.

    Returns:
        (R, N) float32 on ``keys.device``: entry [r, n] depends only on (keys[r], index[..., n]).
    """
    u = _keyed_bits24(keys, index).to(torch.float32)
    # (m + 0.5) / 2^24 in (0, 1), then z = sqrt(2) * erfinv(2u - 1).
    return u.mul_(2.0 * _U24).add_(_U24 - 1.0).erfinv_().mul_(math.sqrt(2.0))


def derive_stream_keys(keys: torch.Tensor, stream: int, position: torch.Tensor | None) -> torch.Tensor:
    """Per-row keys for one noise stream (utility, focus, ...) at one decoding position.

    Args:
        keys: (R, 2) int32 base keys.
        stream: a small constant naming the stream, so streams of one row are independent.
        position: (R,) int32/int64 decoding positions, or None for single-shot outputs.

    Returns:
        (R, 2) int32, a fresh tensor.
    """
    salt = mix32(torch.full_like(keys[:, 0], stream))
    if position is not None:
        salt = mix32(salt ^ mix32(position.to(torch.int32)))
    k1 = mix32(keys[:, 0] ^ salt)
    k2 = mix32(keys[:, 1] + k1)
    return torch.stack((k1, k2), dim=1)
