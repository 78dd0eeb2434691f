"""aimserve's modulation inside vLLM's sampler: a V1 logits processor.

Loaded by vLLM (``--logits-processors service.serving.generation.vllm.processor:AimLogitsProcessor``,
which the gateway's supervisor passes; not also as an entry point, or it would apply twice). For each row
that carries our ``vllm_xargs`` (see `xargs`) it applies exactly what the built-in engine applies:
`service.modulation.modulate` with the row's `RowSpec` and its prompt's semantic codes (from its clean
first-step logits) at the row's own decoding position (the number of tokens it has generated); then, for
rows that sample, the built-in engine's keyed draw (`sampling.choose_tokens`), returned as a one-hot row
that vLLM's greedy sampler picks (the gateway always asks vLLM for greedy decoding). When none of our rows
samples, each row's modulated argmax comes from `service.modulation.greedy.modulated_argmax` (the same
token, with noise drawn only where it can win) and is returned one-hot too. Rows without our
arguments are left untouched, and when no row needs anything ``apply`` returns at once.

Interface: vLLM's V1 ``vllm.v1.sample.logits_processor.LogitsProcessor`` (the one vLLM's CPU build and
GPU builds on Model Runner V1 use). Model Runner V2 (``VLLM_USE_V2_MODEL_RUNNER=1`` on some GPU builds)
has another interface; the supervisor pins V1 (docs/deployment.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from service.modulation import ModulationBatch, modulate
from service.modulation.greedy import modulated_argmax
from service.modulation.semantic import GENERATION_RESOLUTION, prompt_codes
from service.serving.generation.sampling import SamplingBatch, choose_tokens
from service.serving.generation.vllm.xargs import RowArgs, decode

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig


class _Row:
    """A row's arguments, the live list of its generated tokens (vLLM appends to it) and its prompt's
    semantic codes, (L,) int32, taken from its clean logits at its first decoding step."""

    __slots__ = ("args", "codes", "output")

    def __init__(self, args: RowArgs, output: list[int]) -> None:
        self.args, self.output = args, output
        self.codes: torch.Tensor | None = None


class _Plan:
    """Tensors for one batch composition: built when rows join, leave or move, not every step."""

    def __init__(self, rows: dict[int, _Row], vocab: int, device: torch.device) -> None:
        self.index = sorted(rows)
        picked = [rows[i] for i in self.index]
        self.outputs = [r.output for r in picked]
        self.rows = torch.tensor(self.index, dtype=torch.int64, device=device)
        codes = torch.stack([r.codes for r in picked if r.codes is not None])
        self.mod = ModulationBatch.build([r.args.spec for r in picked], vocab, device, codes)
        self.sampling = SamplingBatch.build(
            [r.args.temperature for r in picked], [r.args.top_p for r in picked], device
        )


class AimLogitsProcessor(LogitsProcessor):  # type: ignore[misc]  # vLLM is not typed here
    """Per-row keyed utility and focus modulation, and keyed sampling, for the rows the gateway sent."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """Malformed ``aim_*`` arguments raise ValueError, which vLLM turns into a 400."""
        decode(sampling_params.extra_args)

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        del vllm_config, device, is_pin_memory  # vLLM's signature; tensors follow the logits' device
        self._rows: dict[int, _Row] = {}
        self._plan: _Plan | None = None

    def is_argmax_invariant(self) -> bool:
        """Noise changes the argmax: vLLM must apply this processor to greedy rows too."""
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Track which batch index holds which of our rows (removed, then added, then moved)."""
        if batch_update is None:
            return
        rows = self._rows
        for index in batch_update.removed:
            rows.pop(index, None)
        for index, params, _prompt, output in batch_update.added:
            args = decode(params.extra_args)
            if args is not None and args.needs_processing:
                rows[index] = _Row(args, output)
            else:
                rows.pop(index, None)
        for a, b, direction in batch_update.moved:
            row_a, row_b = rows.pop(a, None), rows.pop(b, None)
            if row_a is not None:
                rows[b] = row_a
            if direction == MoveDirectionality.SWAP and row_b is not None:
                rows[a] = row_b
        self._plan = None

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, V) float32 logits of the batch -> the same tensor with our rows replaced (vLLM allows
        in-place updates); rows without our arguments are not touched.

        On a CPU it runs on one thread: its ops are small and memory-bound (a row is 49,152 values), and
        vLLM's worker runs torch with a thread per core beside its own spinning processes, so each op's
        parallel region waited for a busy core. Measured 2026-12-07 at load 9-13 on 2 cores, the
        smollm2 vocabulary: 1 row 53-70 ms per step with 2 threads vs 1.0-1.6 ms with one (first step
        88-152 vs 5-10 ms), 16 rows 168-231 vs 22-24 ms."""
        if not self._rows:
            return logits
        if logits.device.type != "cpu" or (threads := torch.get_num_threads()) == 1:
            return self._apply(logits)
        torch.set_num_threads(1)
        try:
            return self._apply(logits)
        finally:
            torch.set_num_threads(threads)

    def _apply(self, logits: torch.Tensor) -> torch.Tensor:
        first = [i for i, row in self._rows.items() if row.codes is None or not row.output]
        if first:
            self._set_codes(logits, first)
        plan = self._plan
        if plan is None:
            plan = self._plan = _Plan(self._rows, logits.shape[1], logits.device)
        positions = torch.tensor([len(o) for o in plan.outputs], dtype=torch.int32, device=logits.device)
        mine = logits.index_select(0, plan.rows)
        if plan.sampling.rows is None:  # all greedy: noise only where it can change a row's argmax
            chosen = modulated_argmax(mine, plan.mod, position=positions)
            one_hot = torch.full_like(mine, float("-inf")).scatter_(1, chosen[:, None], 0.0)
            return logits.index_copy_(0, plan.rows, one_hot)
        modulated = modulate(mine, plan.mod, position=positions)
        greedy = modulated.argmax(dim=-1)
        chosen = choose_tokens(modulated, greedy, plan.sampling, plan.mod.row_keys, positions)
        picked = plan.sampling.rows
        one_hot = torch.full_like(modulated[:1], float("-inf")).expand(len(picked), -1).clone()
        one_hot.scatter_(1, chosen.index_select(0, picked)[:, None], 0.0)
        modulated.index_copy_(0, picked, one_hot)
        return logits.index_copy_(0, plan.rows, modulated.to(logits.dtype))

    def _set_codes(self, logits: torch.Tensor, indices: list[int]) -> None:
        """Codes of rows at their first step (the contract of `service.modulation.semantic.prompt_codes`):
        zeros without a projection key, as in the built-in engine. A row that joins later than its first
        step (resumed after preemption) takes them from the logits it joins with."""
        zeros = torch.zeros(GENERATION_RESOLUTION.tables, dtype=torch.int32, device=logits.device)
        for i in indices:
            row = self._rows[i]
            projection = row.args.projection
            row.codes = zeros if projection is None else prompt_codes(logits[i : i + 1], projection)[0]
        self._plan = None
