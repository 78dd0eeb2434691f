"""The vLLM engine: a `GenerationEngine` whose decoding runs in a vLLM server.

The gateway tokenizes (so chat templates, limits and the noise key are computed exactly as for the
built-in engine) and sends vLLM the prompt's token ids on its completions route, streaming, greedy, with
the row's modulation and sampling in ``vllm_xargs`` (see `xargs`): our logits processor inside vLLM
applies them. Nothing from the client's body is forwarded. ``logprobs: 1`` returns, per step, the top
token of vLLM's raw logits (before any processor: ``--logprobs-mode raw_logprobs``, vLLM's default),
which gives live fidelity without a second pass.

Failure: a backend that is not ready refuses at submit (503 with Retry-After); a connection that breaks
or a stream silent for ``stall_s`` ends the stream with `Unavailable` (the route turns that into an SSE
error event or a 503) and tells the backend, which restarts a supervised child.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx

from service.errors import BadInput, Unavailable
from service.models import LoadedModel
from service.serving.generation.engine import eos_ids
from service.serving.generation.interface import EngineStats, EventStream
from service.serving.generation.types import (
    Fidelity,
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    TokenDelta,
    Usage,
    validate_request,
)
from service.serving.generation.vllm.config import VllmSettings
from service.serving.generation.vllm.supervisor import Backend, RemoteVllm, VllmChild
from service.serving.generation.vllm.xargs import encode
from service.settings import Settings

RETRY_AFTER_S = 5.0
OVERLOAD_RETRY_AFTER_S = 1.0


class VllmEngine:
    """Args:
    backend: where vLLM runs (a supervised child or a given URL).
    served_name: the model name vLLM serves; context_length, vocab_size: the model's.
    eos_ids: end-of-sequence tokens (not part of ``token_ids``, as in the built-in engine).
    max_queue: requests beyond ``max_running`` that may wait inside vLLM; one more is refused (503).
    stall_s: seconds without a byte from vLLM after which a stream fails and the backend is suspected.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        served_name: str,
        context_length: int,
        vocab_size: int,
        eos_ids: frozenset[int],
        max_running: int,
        max_queue: int,
        stall_s: float,
    ) -> None:
        self._backend = backend
        self._name = served_name
        self._context_length = context_length
        self._vocab_size = vocab_size
        self._eos = eos_ids
        self._max_running = max_running
        self._limit = max_running + max_queue
        self._stall_s = stall_s
        self._inflight = 0
        self._streams: set[_Stream] = set()
        self._client: httpx.AsyncClient | None = None

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def queue_depth(self) -> int:
        return max(0, self._inflight - self._max_running)

    def stats(self) -> EngineStats:
        running = min(self._inflight, self._max_running)
        ready = self._client is not None and self._backend.ready
        return EngineStats("vllm", ready, self.queue_depth, running, self._backend.restarts)

    async def start(self) -> None:
        if self._client is None:
            timeout = httpx.Timeout(connect=5.0, read=self._stall_s, write=30.0, pool=5.0)
            self._client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=None))
            await self._backend.start()

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
            await self._backend.stop()

    def end_all(self) -> None:
        """End every stream in flight with 503 ``shutting_down`` at its next chunk; keep serving."""
        for stream in list(self._streams):
            stream.ending = True

    async def submit(self, req: GenerationRequest) -> EventStream:
        validate_request(req, context_length=self._context_length, vocab_size=self._vocab_size)
        client = self._client
        if client is None or not self._backend.ready:
            raise Unavailable(
                "the generation engine (vLLM) is starting or restarting; retry shortly",
                code="engine_unavailable",
                retry_after=RETRY_AFTER_S,
            )
        if self._inflight >= self._limit:
            raise Unavailable(
                f"the generation queue is full ({self._limit} requests in flight); retry shortly",
                code="overloaded",
                retry_after=OVERLOAD_RETRY_AFTER_S,
            )
        self._inflight += 1
        try:
            sent = time.monotonic()
            response, chunks, first = await self._open(client, req)
            waited = time.monotonic() - sent
        except BaseException:
            self._inflight -= 1
            raise
        stream = _Stream(self, response, chunks, first, (len(req.prompt_ids), waited))
        self._streams.add(stream)
        return stream

    async def _open(
        self, client: httpx.AsyncClient, req: GenerationRequest
    ) -> tuple[httpx.Response, AsyncIterator[dict[str, Any]], dict[str, Any] | None]:
        """Send the request and wait for its first chunk: vLLM reports a refused request (our processor's
        ``validate_params`` included) as an error event on a 200 stream, which becomes a 400 here."""
        body = {
            "model": self._name,
            "prompt": list(req.prompt_ids),
            "max_tokens": req.max_new_tokens,
            "temperature": 0.0,  # our processor draws sampled rows itself, keyed (see xargs)
            "stop": list(req.stop),
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": 1,
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": True,
            "vllm_xargs": encode(req),
        }
        try:
            response = await client.send(
                client.build_request("POST", f"{self._backend.url}/v1/completions", json=body), stream=True
            )
        except httpx.HTTPError as exc:
            self._backend.suspect()
            raise _lost(exc) from None
        if response.status_code == 200:
            chunks = _chunks(response)
            try:
                first = await anext(chunks, None)
            except (TimeoutError, httpx.HTTPError, ValueError) as exc:
                await response.aclose()
                self._backend.suspect()
                raise _lost(exc) from None
            if first is None or "error" not in first:
                return response, chunks, first
            status, detail = int(first["error"].get("code") or 500), _error_message(first)
        else:
            status, detail = response.status_code, _error_message(await response.aread())
        await response.aclose()
        if status == 400:
            raise BadInput(f"the generation engine refused the request: {detail}")
        self._backend.suspect()
        raise Unavailable(
            f"the generation engine (vLLM) answered {status}: {detail}; retry shortly",
            code="engine_unavailable",
            retry_after=RETRY_AFTER_S,
        )

    def _release(self, stream: _Stream) -> None:
        self._inflight -= 1
        self._streams.discard(stream)


class _Stream:
    """One vLLM completion stream as our events; ``aclose`` closes the connection (vLLM aborts the row)."""

    def __init__(
        self,
        engine: VllmEngine,
        response: httpx.Response,
        chunks: AsyncIterator[dict[str, Any]],
        first: dict[str, Any] | None,
        prompt: tuple[int, float],
    ) -> None:
        self._engine = engine
        self._response = response
        self._events = self._run(chunks, first, prompt)
        self._closed = False
        self.ending = False

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> GenerationEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._events.aclose()
            await self._response.aclose()
            self._engine._release(self)

    async def _run(
        self, chunks: AsyncIterator[dict[str, Any]], first: dict[str, Any] | None, prompt: tuple[int, float]
    ) -> AsyncGenerator[GenerationEvent, None]:
        """``prompt``: (prompt tokens, seconds from sending to vLLM's first chunk, reported as the queue
        wait: vLLM's queueing plus its prefill, an upper bound of the wait itself)."""
        prompt_tokens, queue_wait_s = prompt
        text: list[str] = []
        tokens: list[int] = []
        agree = steps = 0
        reason, completion = "length", 0
        try:
            async for chunk in _prepend(first, chunks):
                if self.ending:
                    raise Unavailable(
                        "the service is shutting down; retry on another replica", code="shutting_down"
                    )
                if "error" in chunk:
                    raise Unavailable(f"the generation engine failed: {_error_message(chunk)}", retry_after=5)
                for choice in chunk.get("choices") or []:
                    a, n, ids = _step_counts(choice.get("logprobs"))
                    agree, steps = agree + a, steps + n
                    tokens += [t for t in ids if t not in self._engine._eos]
                    delta = choice.get("text") or ""
                    if delta:
                        text.append(delta)
                        yield TokenDelta(delta)
                    if choice.get("finish_reason"):
                        reason = "length" if choice["finish_reason"] == "length" else "stop"
                if chunk.get("usage"):
                    completion = int(chunk["usage"]["completion_tokens"])
        except (TimeoutError, httpx.HTTPError) as exc:
            self._engine.backend.suspect()
            raise _lost(exc) from None
        usage = Usage(prompt_tokens, completion or steps)
        fidelity = Fidelity(agree, steps)
        yield GenerationDone("".join(text), reason, usage, fidelity, tuple(tokens), queue_wait_s)  # type: ignore[arg-type]


async def _prepend(
    first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


async def _chunks(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of an SSE body, up to ``[DONE]``."""
    async for line in response.aiter_lines():
        if not line.startswith("data: "):
            continue
        data = line[6:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


def _step_counts(logprobs: dict[str, Any] | None) -> tuple[int, int, list[int]]:
    """(steps whose served token is the raw top-1, steps, served token ids) of one chunk."""
    if not logprobs:
        return 0, 0, []
    ids = [int(str(t).removeprefix("token_id:")) for t in logprobs.get("tokens") or []]
    agree = 0
    for token, top in zip(ids, logprobs.get("top_logprobs") or [], strict=False):
        if top:
            best = max(top.items(), key=lambda kv: kv[1])[0]
            agree += int(str(best).removeprefix("token_id:")) == token
    return agree, len(ids), ids


def _error_message(raw: bytes | dict[str, Any]) -> str:
    try:
        body = json.loads(raw) if isinstance(raw, bytes) else raw
        err = body.get("error", body)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    except (ValueError, AttributeError):
        return "no details"


def _lost(exc: BaseException) -> Unavailable:
    return Unavailable(
        f"the generation engine (vLLM) stopped answering ({type(exc).__name__}); retry shortly",
        code="engine_unavailable",
        retry_after=RETRY_AFTER_S,
    )


def vllm_engine(model: LoadedModel, settings: Settings) -> VllmEngine:
    """The vLLM engine for a loaded text-generation preset or folder, as the settings say.

    The gateway keeps the model's tokenizer (prompts, chat template, focus targets) and its calibration
    logits (tiers); vLLM serves the same folder.
    """
    vs = VllmSettings.from_env()
    backend: Backend
    if vs.url is not None:
        backend = RemoteVllm(vs.url)
    else:
        backend = VllmChild(model.path, model.name, vs, max_num_seqs=settings.max_batch_size)
    config = model.model.config.get_text_config(decoder=True)
    return VllmEngine(
        backend,
        served_name=model.name,
        context_length=int(config.max_position_embeddings),
        vocab_size=int(config.vocab_size),
        eos_ids=eos_ids(model.model, model.tokenizer),
        max_running=settings.max_batch_size,
        max_queue=settings.queue_size,
        stall_s=vs.stall_s,
    )
