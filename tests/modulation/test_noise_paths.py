"""The NumPy path for small CPU tensors computes exactly the torch path's bits (`service.modulation.noise`).

The torch path is the one CUDA runs and the one large CPU batches run, so any difference would make a
row's noise depend on its batch size or device. Inputs are fixed-seed random words over the whole int32
range, 2^24 of them for the hash itself.
"""

from __future__ import annotations

import torch

from service.modulation import noise

GEN = torch.Generator().manual_seed(20261202)


def _words(*shape: int) -> torch.Tensor:
    return torch.randint(-(2**31), 2**31 - 1, shape, dtype=torch.int32, generator=GEN)


def test_mix32_paths_agree_on_2_24_words() -> None:
    x = _words(1 << 24)
    numpy_bits = noise._as_tensor(noise._np_lowbias32_(noise._u32(x)))
    assert torch.equal(numpy_bits, noise._torch_mix32(x))


def test_keyed_bits_paths_agree_per_row_and_per_element_keys() -> None:
    keys, index = _words(64, 2), _words(1 << 14)
    assert torch.equal(noise._np_keyed_bits24(keys, index), noise._torch_keyed_bits24(keys, index))
    per_row_index = _words(64, 512)
    assert torch.equal(
        noise._np_keyed_bits24(keys, per_row_index), noise._torch_keyed_bits24(keys, per_row_index)
    )
    per_element = _words(64, 512, 2)
    assert torch.equal(
        noise._np_keyed_bits24(per_element, per_row_index),
        noise._torch_keyed_bits24(per_element, per_row_index),
    )


def test_derived_stream_keys_paths_agree() -> None:
    keys, position = _words(4096, 2), torch.randint(0, 1 << 20, (4096,), generator=GEN)
    for stream in (1, 2, 3):
        for pos in (position, None):
            np_pos = None if pos is None else noise._u32(pos)
            k = noise._u32(keys)
            np_words = noise._derive_words(k[:, 0], k[:, 1], stream, np_pos, noise._np_mix32)
            t_pos = None if pos is None else pos.to(torch.int32)
            t_words = noise._derive_words(keys[:, 0], keys[:, 1], stream, t_pos, noise._torch_mix32)
            for a, b in zip(np_words, t_words, strict=True):
                assert torch.equal(noise._as_tensor(a), b)


def test_small_and_large_batches_give_a_row_the_same_noise() -> None:
    """The public functions pick a path by size: row 0's draws must not change with the batch around it."""
    keys, index = _words(40, 2), torch.arange(1000, dtype=torch.int32)
    alone = noise.keyed_normal(keys[:1], index)  # 1,000 elements: NumPy
    batched = noise.keyed_normal(keys, index)  # 40,000 elements: torch
    assert torch.equal(alone[0], batched[0])
    position = torch.arange(40)
    assert torch.equal(
        noise.derive_stream_keys(keys[:1], 1, position[:1])[0], noise.derive_stream_keys(keys, 1, position)[0]
    )
