"""The decoding loop: one worker thread owns the model, the running batch and all of its tensors.

Each iteration admits waiting rows (when the batch is idle it first waits up to ``max_wait`` for
company; when rows are running it admits whatever waits, without delay: continuous batching), prefills
them, then runs one step for every row: modulate at the row's own step index -> choose -> emit -> prune
finished or cancelled rows -> one decoding forward. A step's events go out in one ``deliver`` call
(the engine hands them to the event loop with one ``loop.call_soon_threadsafe``), before the forward, so
streaming latency is one step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from service.errors import AimError, Unavailable
from service.modulation import ModulationBatch, modulate
from service.modulation.greedy import modulated_argmax
from service.modulation.semantic import GENERATION_RESOLUTION, prompt_codes
from service.serving.generation import batch as gen_batch
from service.serving.generation.row import Item, Row
from service.serving.generation.sampling import SamplingBatch, choose_tokens
from service.serving.generation.types import GenerationDone, StepStats
from service.serving.traffic import generation_sample

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """max_wait_s: how long an idle worker waits for a batch to fill after the first request arrives."""

    device: torch.device
    max_batch_size: int
    max_wait_s: float
    eos_ids: frozenset[int]
    pad_id: int
    vocab_size: int
    mergeable: bool


class Worker:
    """Owns the decoding loop; ``run`` is the thread's target, ``stop`` ends it after the current step."""

    def __init__(
        self,
        model: PreTrainedModel,
        cfg: WorkerConfig,
        deliver: Callable[[list[tuple[Row, Item]]], None],
        hook: Callable[[StepStats], None] | None,
    ) -> None:
        self._model = model
        self._cfg = cfg
        self._deliver = deliver
        self._hook = hook
        self._out: list[tuple[Row, Item]] = []
        self.cond = threading.Condition()
        self.waiting: deque[Row] = deque()
        self._stopping = False
        self._ending = False
        self._rows: list[Row] = []
        self._joining = 0  # rows taken from ``waiting`` whose prefill has not finished
        self._kv: gen_batch.KVBatch | None = None
        self._logits: torch.Tensor | None = None
        self._mod: ModulationBatch | None = None
        self._sampling = SamplingBatch(None, None, None)

    @property
    def running(self) -> int:
        """Rows in the running batch (read from any thread: a length, no lock needed)."""
        return len(self._rows)

    def arm(self) -> None:
        """Allow ``run`` to serve again after a ``stop`` (call before starting a new thread)."""
        with self.cond:
            self._stopping = False

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify_all()

    def end_all(self) -> None:
        """Fail every running and waiting row with ``shutting_down`` before the next step; keep serving."""
        with self.cond:
            self._ending = True
            self.cond.notify_all()

    @property
    def free_slots(self) -> int:
        """Rows the running batch can still take (read without the lock: an estimate for admission)."""
        rows = len(self._rows) + self._joining
        if rows and not self._cfg.mergeable:
            return 0
        return max(0, self._cfg.max_batch_size - rows)

    def enqueue(self, row: Row) -> None:
        """Queue ``row`` behind every waiting row of the same or higher priority (call with ``cond`` held)."""
        at = len(self.waiting)
        while at > 0 and self.waiting[at - 1].request.priority < row.request.priority:
            at -= 1
        self.waiting.insert(at, row)
        self.cond.notify()

    def run(self) -> None:
        with torch.inference_mode():
            while (new := self._admit()) is not None:
                try:
                    self._step(new)
                except Exception:  # a failed forward must not kill the engine for later requests
                    log.exception("generation step failed; failing the %d rows in the batch", len(self._rows))
                    failed = self._rows + [r for r in new if r not in self._rows]
                    self._fail(failed, lambda: AimError("generation failed on the model host"))
                    self._reset()
        self._end_rows()

    def _end_rows(self) -> None:
        with self.cond:
            pending, self.waiting = list(self.waiting), deque()
            self._ending = False
        self._fail(self._rows + pending, _shutting_down)
        self._reset()

    def _admit(self) -> list[Row] | None:
        """Rows to prefill now; blocks while idle; None once stopping."""
        if self._ending:
            self._end_rows()
        with self.cond:
            if not self._rows:
                while not self._live_waiting() and not self._stopping and not self._ending:
                    self.cond.wait()
                if self._ending:
                    return []  # the next call ends what is waiting
                # A model that cannot merge rows into a running batch waits for company; one that can
                # starts at once, since later requests join at the next step anyway.
                if not self._stopping and not self._cfg.mergeable:
                    deadline = self.waiting[0].submitted_at + self._cfg.max_wait_s
                    while len(self.waiting) < self._cfg.max_batch_size and not self._stopping:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self.cond.wait(left)
            if self._stopping:
                return None
            if self._rows and not self._cfg.mergeable:
                return []
            room = self._cfg.max_batch_size - len(self._rows)
            new: list[Row] = []
            while self.waiting and len(new) < room:
                row = self.waiting.popleft()
                if not row.cancelled:
                    new.append(row)
            self._joining = len(new)
            return new

    def _live_waiting(self) -> bool:
        while self.waiting and self.waiting[0].cancelled:
            self.waiting.popleft()
        return bool(self.waiting)

    def _step(self, new: list[Row]) -> None:
        start = time.monotonic()
        if new:
            self._admit_rows(new, start)
        if not self._rows or self._logits is None or self._mod is None:
            return
        logits, mod = self._logits, self._mod
        steps = [r.steps for r in self._rows]
        picked, top = generation_sample(steps, logits)
        if top is not None:
            for j, i in enumerate(picked):
                self._rows[i].sampled.append(top[j])
        positions = torch.tensor(steps, dtype=torch.int32, device=logits.device)
        if self._sampling.rows is None:  # all greedy: noise only where it can change a row's argmax
            chosen = greedy = modulated_argmax(logits, mod, position=positions)
        else:
            modulated = modulate(logits, mod, position=positions)
            greedy = modulated.argmax(dim=-1)
            chosen = choose_tokens(modulated, greedy, self._sampling, mod.row_keys, positions)
        plain = greedy if mod.is_identity else logits.argmax(dim=-1)
        # One device-to-host transfer for the whole step.
        host = torch.stack((chosen, greedy, plain)).tolist()
        rows = self._rows
        keep = [i for i, row in enumerate(rows) if self._emit(row, host[0][i], _agrees(row, host, i))]
        self._flush()
        batch_size = len(rows)
        self._prune(keep)
        if self._rows and self._kv is not None:
            fed = chosen if len(keep) == batch_size else chosen[torch.tensor(keep, device=chosen.device)]
            self._logits = gen_batch.decode(self._model, self._kv, fed)
        self._report(StepStats(batch_size, len(new), len(self.waiting), time.monotonic() - start))

    def _admit_rows(self, new: list[Row], now: float) -> None:
        for row in new:
            row.admitted_at = now
        logits, kv = gen_batch.prefill(
            self._model, [r.request.prompt_ids for r in new], self._cfg.pad_id, self._cfg.device
        )
        if self._kv is None or self._logits is None:
            self._kv, self._logits = kv, logits
        else:
            gen_batch.merge(self._kv, kv)
            self._logits = torch.cat((self._logits, logits))
        _set_codes(new, logits)
        self._rows.extend(new)
        self._joining = 0
        self._rebuild()

    def _emit(self, row: Row, token: int, agrees: bool | None) -> bool:
        """Record one step of ``row`` and queue its events; returns True while the row continues."""
        if row.cancelled:
            return False
        events = row.advance(token, agrees, self._cfg.eos_ids)
        self._out.extend((row, e) for e in events)
        return not (events and isinstance(events[-1], GenerationDone))

    def _prune(self, keep: list[int]) -> None:
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._reset()
            return
        assert self._kv is not None
        gen_batch.select(self._kv, keep, trim=self._cfg.mergeable)
        self._rows = [self._rows[i] for i in keep]
        self._rebuild()

    def _rebuild(self) -> None:
        """Batch tensors for the current row composition (only when rows join or leave)."""
        specs = [r.spec for r in self._rows]
        codes = torch.stack([r.codes for r in self._rows])
        self._mod = ModulationBatch.build(specs, self._cfg.vocab_size, self._cfg.device, codes)
        self._sampling = SamplingBatch.build(
            [r.request.temperature for r in self._rows],
            [r.request.top_p for r in self._rows],
            self._cfg.device,
        )

    def _reset(self) -> None:
        self._rows, self._kv, self._logits, self._mod = [], None, None, None
        self._joining = 0

    def _fail(self, rows: list[Row], error: Callable[[], AimError]) -> None:
        """Give every live row in ``rows`` its own exception (one instance per consumer's traceback)."""
        self._out.extend((row, error()) for row in rows if not row.cancelled)
        self._flush()

    def _flush(self) -> None:
        if self._out:
            out, self._out = self._out, []
            self._deliver(out)

    def _report(self, stats: StepStats) -> None:
        if self._hook is None:
            return
        try:
            self._hook(stats)
        except Exception:  # metrics must never stop generation
            log.exception("generation metrics hook failed")


def _set_codes(rows: list[Row], first_logits: torch.Tensor) -> None:
    """Each new row's prompt codes from its clean first-step logits (zeros without a projection key, so
    every row has the same number of noise components whatever the batch holds)."""
    zeros = torch.zeros(GENERATION_RESOLUTION.tables, dtype=torch.int32, device=first_logits.device)
    for i, row in enumerate(rows):
        projection = row.request.projection
        row.codes = zeros if projection is None else prompt_codes(first_logits[i : i + 1], projection)[0]


def _shutting_down() -> Unavailable:
    return Unavailable("the service is shutting down; retry on another replica", code="shutting_down")


def _agrees(row: Row, host: list[list[int]], i: int) -> bool | None:
    """Live fidelity of row ``i``'s step (modulated argmax ``host[1]`` vs clean argmax ``host[2]``), for
    greedy rows only (`Row.compared`); None for a sampled row."""
    return host[1][i] == host[2][i] if row.request.temperature == 0.0 else None
