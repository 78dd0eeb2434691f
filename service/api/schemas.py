"""Request and response bodies of the contract (shared/spec/api.md). Checked once, here, at the edge."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_INPUTS = 64


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageInput(Strict):
    image: str = Field(description="base64-encoded PNG or JPEG")


class ClassifyRequest(Strict):
    inputs: Annotated[list[str] | list[ImageInput], Field(min_length=1, max_length=MAX_INPUTS)]
    top_k: int = Field(default=1, ge=1, le=100)


class SegmentRequest(Strict):
    inputs: Annotated[list[ImageInput], Field(min_length=1, max_length=MAX_INPUTS)]


class GenerateRequest(Strict):
    prompt: str = Field(min_length=1)
    max_new_tokens: int = Field(default=64, ge=1, le=1024)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    stream: bool = False
    stop: list[str] = Field(default_factory=list, max_length=8)


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
    classes: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=64)]
    strength: float = Field(gt=0.0, le=100.0)
    direction: Literal["boost", "suppress"] = "boost"


class FeedbackRequest(Strict):
    id: str = Field(pattern=r"^req_[A-Za-z0-9]{8,64}$")
    index: int = Field(default=0, ge=0, lt=MAX_INPUTS)
    label: str = Field(min_length=1)


class MeResponse(BaseModel):
    tenant: str
    name: str
    tier: str
    sigma: float
    focus: FocusOut | None
    rate_limit: dict[str, int] | None


class CreateTenant(Strict):
    name: str = Field(min_length=1, max_length=200)
    tier: str | None = None


class PatchTenant(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    tier: str | None = None
    focus: FocusRequest | None = None


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
