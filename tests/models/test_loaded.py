"""prepare -> Item and forward -> logits on tiny random models: shapes, digests, batching, limits."""

from __future__ import annotations

import pytest
import torch

from service.errors import BadInput, PayloadTooLarge
from service.models import InputLimits, load_model, upsample
from tests.models.images import encode, noise_image


@pytest.fixture(scope="module")
def text_model(tiny_models):
    return load_model(tiny_models["text-classification"])


@pytest.fixture(scope="module")
def image_model(tiny_models):
    return load_model(tiny_models["image-classification"], limits=InputLimits(max_image_pixels=200 * 200))


@pytest.fixture(scope="module")
def seg_model(tiny_models):
    return load_model(tiny_models["semantic-segmentation"])


def test_text_item_and_logits(text_model):
    item = text_model.prepare("the cat sat on the mat")
    assert item.size is None
    assert item.tensors["input_ids"].dtype == torch.long
    assert len(item.digest) == 32
    logits = text_model.forward([item, text_model.prepare("a dog")])
    assert logits.shape == (2, 3)
    assert logits.dtype == torch.float32


def test_padding_does_not_change_a_row(text_model):
    short, long = text_model.prepare("a dog"), text_model.prepare("the cat sat on the mat and ran far away")
    alone = text_model.forward([short])
    batched = text_model.forward([long, short])
    torch.testing.assert_close(batched[1:], alone, rtol=0, atol=1e-5)


def test_text_digest_is_over_what_the_model_sees(text_model):
    a = text_model.prepare("The Cat")
    assert a.digest == text_model.prepare("the cat").digest  # uncased tokenizer: same ids, same noise key
    assert a.digest == text_model.prepare(b"the cat").digest
    assert a.digest != text_model.prepare("the dog").digest


def test_long_text_is_truncated_to_max_length(text_model):
    item = text_model.prepare("cat " * 500)
    assert text_model.max_length == 64
    assert len(item.tensors["input_ids"]) == 64
    assert text_model.forward([item]).shape == (1, 3)
    assert item.digest == text_model.prepare("cat " * 600).digest


@pytest.mark.parametrize("raw", ["", "   \n\t", b"\xff\xfe not utf-8"])
def test_unusable_text(text_model, raw):
    with pytest.raises(BadInput):
        text_model.prepare(raw)


def test_text_over_the_character_limit(text_model):
    with pytest.raises(PayloadTooLarge, match="20001 characters; the limit is 20000"):
        text_model.prepare("x" * 20_001)


def test_image_item_keeps_original_size(image_model):
    item = image_model.prepare(encode(noise_image(50, 70)))
    assert item.size == (50, 70)
    assert item.tensors["pixel_values"].shape == (3, 32, 32)
    logits = image_model.forward([item, item])
    assert logits.shape == (2, 4)
    torch.testing.assert_close(logits[0], logits[1])


def test_image_digest_ignores_the_encoding(image_model):
    pixels = noise_image(20, 30, seed=3)
    png = image_model.prepare(encode(pixels)).digest
    assert image_model.prepare(encode(pixels, optimize=True, compress_level=9)).digest == png
    assert image_model.prepare(encode(noise_image(20, 30, seed=4))).digest != png


def test_grey_image_given_to_an_rgb_model(image_model):
    assert image_model.prepare(encode(noise_image(32, 32, channels=1))).tensors["pixel_values"].shape == (
        3,
        32,
        32,
    )


def test_image_model_refuses_text(image_model):
    with pytest.raises(BadInput, match="PNG or JPEG"):
        image_model.prepare("aGVsbG8=")


def test_image_pixel_limit(image_model):
    with pytest.raises(PayloadTooLarge, match="201x200 = 40200 pixels; the limit is 40000"):
        image_model.prepare(encode(noise_image(200, 201)))


def test_segmentation_logits_and_upsample(seg_model):
    items = [seg_model.prepare(encode(noise_image(48, 40))), seg_model.prepare(encode(noise_image(20, 64)))]
    logits = seg_model.forward(items)
    assert logits.shape == (2, 3, 8, 8)  # SegFormer: 1/4 of the 32x32 processor size
    for row, item in zip(logits, items, strict=True):
        full = upsample(row[None], item.size)
        assert full.shape == (1, 3, *item.size)
        assert full.dtype == torch.float32
    same = upsample(logits, (8, 8))
    torch.testing.assert_close(same, logits)
