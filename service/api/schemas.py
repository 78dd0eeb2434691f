"""Request and response bodies of the contract (docs/api.md). Checked once, here, at the edge.

Request models are strict: JSON types are not coerced (``stream: 0`` and ``top_k: true`` are 422), unknown
fields are refused, and every bound comes from `service.limits`, so what the OpenAPI document allows is
exactly what the service accepts. Every text field is a `Text`: valid Unicode, so it can be encoded.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from service.limits import (
    MAX_FOCUS_CLASS_CHARS,
    MAX_FOCUS_CLASSES,
    MAX_FOCUS_STRENGTH,
    MAX_INPUTS,
    MAX_NAME_CHARS,
    MAX_NEW_TOKENS,
    MAX_STOP_CHARS,
    MAX_STOP_STRINGS,
    MAX_TEMPERATURE,
    MAX_TOP_K,
)
from service.serving.traffic import DEFAULT_MAX_SHARE


def _encodable(text: str) -> str:
    """A JSON string may carry a lone surrogate (``"\\ud800"``) that no tokenizer or encoder can take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text is not valid Unicode (a lone surrogate at character {exc.start})") from None
    return text


def _integral(value: object) -> object:
    """JSON Schema counts ``2.0`` as an integer; ``true`` and ``"2"`` are not (the strict check refuses)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


#: Every text field of every request: a string that is valid Unicode (422 otherwise).
Text = Annotated[str, AfterValidator(_encodable)]
# Integer fields: a JSON integer (``2`` or ``2.0``), never a boolean or a string. The bounds come before
# the validator so that they stay JSON Schema bounds in the OpenAPI document.
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K), BeforeValidator(_integral)]
InputIndex = Annotated[int, Field(ge=0, lt=MAX_INPUTS), BeforeValidator(_integral)]
TokenCount = Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS), BeforeValidator(_integral)]
#: A stop string: non-empty, at most `MAX_STOP_CHARS` characters.
StopText = Annotated[Text, Field(min_length=1, max_length=MAX_STOP_CHARS)]
StopList = Annotated[list[StopText], Field(max_length=MAX_STOP_STRINGS)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ImageInput(Strict):
    image: Text = Field(description="base64-encoded PNG or JPEG")


class ClassifyRequest(Strict):
    inputs: (
        Annotated[list[Annotated[Text, Field(min_length=1)]], Field(min_length=1, max_length=MAX_INPUTS)]
        | Annotated[list[ImageInput], Field(min_length=1, max_length=MAX_INPUTS)]
    )
    top_k: TopK = 1


class SegmentRequest(Strict):
    inputs: Annotated[list[ImageInput], Field(min_length=1, max_length=MAX_INPUTS)]


class GenerateRequest(Strict):
    prompt: Text = Field(min_length=1)
    max_new_tokens: TokenCount = 64
    temperature: float = Field(default=0.0, ge=0.0, le=MAX_TEMPERATURE)
    stream: bool = False
    stop: StopList = Field(default_factory=list)


class FocusOut(BaseModel):
    classes: list[str]
    strength: float
    direction: Literal["boost", "suppress"]


class Modulation(BaseModel):
    sigma: float
    focus: FocusOut | None


class Scored(BaseModel):
    label: str
    score: float


class ClassifyResult(BaseModel):
    label: str
    score: float
    top_k: list[Scored]


class Envelope(BaseModel):
    id: str
    model: str
    tier: str
    modulation: Modulation


class ClassifyResponse(Envelope):
    results: list[ClassifyResult]


class SegClass(BaseModel):
    label: str
    pixel_fraction: float


class SegmentResult(BaseModel):
    width: int
    height: int
    mask: str = Field(description="base64 PNG, one class id per pixel (8-bit grayscale)")
    classes: list[SegClass]


class SegmentResponse(Envelope):
    results: list[SegmentResult]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class GenerateResponse(Envelope):
    text: str
    finish_reason: str
    usage: Usage


class FocusRequest(Strict):
    classes: Annotated[
        list[Annotated[Text, Field(min_length=1, max_length=MAX_FOCUS_CLASS_CHARS)]],
        Field(min_length=1, max_length=MAX_FOCUS_CLASSES),
    ]
    strength: float = Field(gt=0.0, le=MAX_FOCUS_STRENGTH)
    direction: Literal["boost", "suppress"] = "boost"


class FeedbackRequest(Strict):
    id: str = Field(pattern=r"^req_[A-Za-z0-9]{8,64}$")
    index: InputIndex = 0
    label: Text = Field(min_length=1)


class MeResponse(BaseModel):
    tenant: str
    name: str
    tier: str
    sigma: float
    focus: FocusOut | None
    rate_limit: dict[str, int] | None


class CreateTenant(Strict):
    name: Text = Field(min_length=1, max_length=MAX_NAME_CHARS)
    tier: Text | None = None


class PatchTenant(Strict):
    name: Annotated[Text, Field(min_length=1, max_length=MAX_NAME_CHARS)] | None = None
    tier: Text | None = None
    focus: FocusRequest | None = None


class CalibrateTier(Strict):
    """``POST /admin/tiers/{tier}/calibrate``: re-solve the tier's σ from its recently served outputs."""

    target_fidelity: float | None = Field(default=None, gt=0.0, le=1.0)
    apply: Literal["live", "file", "none"] = "none"
    max_tenant_share: float = Field(default=DEFAULT_MAX_SHARE, gt=0.0, le=1.0)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
