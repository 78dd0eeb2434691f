"""The vLLM engine: a `GenerationEngine` whose decoding runs in a vLLM server.

The gateway tokenizes (so chat templates, limits and the noise key are computed exactly as for the
built-in engine) and sends vLLM the prompt's token ids on its completions route, streaming, greedy, with
the row's modulation and sampling in ``vllm_xargs`` (see `xargs`): our logits processor inside vLLM
applies them. Nothing from the client's body is forwarded. ``logprobs: k`` returns, per step, the top k raw
logits (before any processor: the supervisor starts vLLM with ``--logprobs-mode raw_logits --max-logprobs
128``), read as the built-in engine reads its logits (`steps.StepReader`): k = 1 gives live fidelity on
every request; k = ``GENERATION_TOP`` on an evenly spread ``sample_share`` of requests also gives the tier's
traffic sample, without a second pass (k is paid on every token: bench/results/vllm_logprobs.json).

Failure: a backend that is not ready refuses at submit (503 with Retry-After); a connection that breaks
or a stream silent for ``stall_s`` ends the stream with `Unavailable` (the route turns that into an SSE
error event or a 503) and tells the backend, which restarts a supervised child.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from service.errors import BadInput, Unavailable
from service.models import LoadedModel
from service.serving.generation.engine import eos_ids
from service.serving.generation.interface import EngineStats, EventStream
from service.serving.generation.types import GenerationRequest, validate_request
from service.serving.generation.vllm.config import VllmSettings
from service.serving.generation.vllm.steps import StepReader
from service.serving.generation.vllm.stream import RETRY_AFTER_S, VllmStream, chunks, error_message, lost
from service.serving.generation.vllm.supervisor import Backend, RemoteVllm, VllmChild
from service.serving.generation.vllm.xargs import encode
from service.serving.traffic import GENERATION_TOP
from service.settings import Settings

OVERLOAD_RETRY_AFTER_S = 1.0
log = logging.getLogger(__name__)


class VllmEngine:
    """Args:
    backend: where vLLM runs (a supervised child or a given URL).
    served_name: the model name vLLM serves; context_length, vocab_size: the model's.
    eos_ids: end-of-sequence tokens (not part of ``token_ids``, as in the built-in engine).
    max_queue: requests beyond ``max_running`` that may wait inside vLLM; one more is refused (503).
    stall_s: seconds without a byte from vLLM after which a stream fails and the backend is suspected.
    priority_scheduling: vLLM runs ``--scheduling-policy priority`` (the supervised child does): each
        request carries its tier's priority, so waiting requests join vLLM's running batch highest
        priority first, as in the built-in engine. A server started without it refuses any priority
        but 0, so none is sent then (``AIM_VLLM_URL``: first come, first served).
    sample_share: share of requests whose steps feed the traffic sample, in [0, 1] (`VllmSettings`).
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
        priority_scheduling: bool = False,
        sample_share: float = 1.0,
    ) -> None:
        self._backend = backend
        self._name = served_name
        self._context_length = context_length
        self._vocab_size = vocab_size
        self._eos = eos_ids
        self._max_running = max_running
        self._limit = max_running + max_queue
        self._stall_s = stall_s
        self._priority = priority_scheduling
        self._share, self._credit = sample_share, 1.0 - sample_share  # the first request is sampled
        self._inflight = 0
        self._streams: set[VllmStream] = set()
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
            top = self._top()
            sent = time.monotonic()
            try:
                response, rest, first = await self._open(
                    client, completion_body(self._name, req, top=top, priority_scheduling=self._priority)
                )
            except BadInput as exc:
                if top == 1 or "logprobs" not in exc.message:
                    raise
                # The operator's vLLM caps logprobs below GENERATION_TOP: not the tenant's fault.
                log.error("vLLM refused %d logprobs per step (%s); traffic sampling is off", top, exc.message)
                self._share, top = 0.0, 1
                response, rest, first = await self._open(
                    client, completion_body(self._name, req, top=top, priority_scheduling=self._priority)
                )
            waited = time.monotonic() - sent
        except BaseException:
            self._inflight -= 1
            raise
        reader = StepReader(compare=req.temperature == 0.0, top=top if top > 1 else 0)
        prompt = (len(req.prompt_ids), waited)
        stream = VllmStream(self._backend, self._eos, self._release, response, rest, first, prompt, reader)
        self._streams.add(stream)
        return stream

    def _top(self) -> int:
        """k for the next request: ``GENERATION_TOP`` on an evenly spread ``sample_share`` of requests."""
        self._credit += self._share
        if self._credit >= 1.0 and self._share > 0.0:
            self._credit -= 1.0
            return GENERATION_TOP
        return 1

    async def _open(
        self, client: httpx.AsyncClient, body: dict[str, Any]
    ) -> tuple[httpx.Response, AsyncIterator[dict[str, Any]], dict[str, Any] | None]:
        """Send the request and wait for its first chunk: vLLM reports a refused request (our processor's
        ``validate_params`` included) as an error event on a 200 stream, which becomes a 400 here."""
        try:
            response = await client.send(
                client.build_request("POST", f"{self._backend.url}/v1/completions", json=body), stream=True
            )
        except httpx.HTTPError as exc:
            self._backend.suspect()
            raise lost(exc) from None
        if response.status_code == 200:
            rest = chunks(response)
            try:
                first = await anext(rest, None)
            except (TimeoutError, httpx.HTTPError, ValueError) as exc:
                await response.aclose()
                self._backend.suspect()
                raise lost(exc) from None
            if first is None or "error" not in first:
                return response, rest, first
            status, detail = int(first["error"].get("code") or 500), error_message(first)
        else:
            status, detail = response.status_code, error_message(await response.aread())
        await response.aclose()
        if status == 400:
            raise BadInput(f"the generation engine refused the request: {detail}")
        self._backend.suspect()
        raise Unavailable(
            f"the generation engine (vLLM) answered {status}: {detail}; retry shortly",
            code="engine_unavailable",
            retry_after=RETRY_AFTER_S,
        )

    def _release(self, stream: VllmStream) -> None:
        self._inflight -= 1
        self._streams.discard(stream)


def completion_body(
    served_name: str, req: GenerationRequest, *, top: int = 1, priority_scheduling: bool = False
) -> dict[str, Any]:
    """The body the gateway sends vLLM's completions route for ``req``: the prompt's token ids, greedy,
    streamed, with the ``top`` largest raw logits per step (1: live fidelity; ``GENERATION_TOP``: also the
    traffic sample) and the row's modulation in ``vllm_xargs``; with ``priority_scheduling``, the tier's
    priority (vLLM serves lower values first: negated)."""
    body: dict[str, Any] = {
        "model": served_name,
        "prompt": list(req.prompt_ids),
        "max_tokens": req.max_new_tokens,
        "temperature": 0.0,  # our processor draws sampled rows itself, keyed (see xargs)
        "stop": list(req.stop),
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": top,
        "return_tokens_as_token_ids": True,
        "skip_special_tokens": True,
        "vllm_xargs": encode(req),
    }
    if priority_scheduling:
        body["priority"] = -req.priority
    return body


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
        priority_scheduling=vs.url is None,  # the child is started with --scheduling-policy priority
        sample_share=vs.sample_share,
    )
