"""Run by test_processor.py with vLLM's interpreter: drives the real `AimLogitsProcessor` through vLLM's
own `BatchUpdate` types and saves what it returned.

argv[1]: a torch file {"logits": (B, V), "extra": [vllm_xargs | None] per row, "outputs": [tokens so far],
"bad": [malformed vllm_xargs], "command": the supervised child's arguments, "body": a gateway request body,
"greedy": indices of rows that decode greedily};
argv[2]: where to save {"out": (B, V), "moved_out": (B, V), "greedy_out": (G, V) those rows alone in a batch,
"errors": [str], "scheduling": what vLLM parsed,
"threads": torch's thread count after ``apply``}.
"""

from __future__ import annotations

import sys

import torch
from vllm import SamplingParams
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.entrypoints.openai.completion.protocol import CompletionRequest
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from service.serving.generation.vllm.processor import AimLogitsProcessor


def main(src: str, dst: str) -> None:
    case = torch.load(src)
    logits, extra, outputs = case["logits"], case["extra"], case["outputs"]
    proc = AimLogitsProcessor(None, torch.device("cpu"), False)
    added = [
        (i, SamplingParams(max_tokens=8, extra_args=x), None, [7] * n)
        for i, (x, n) in enumerate(zip(extra, outputs, strict=True))
    ]
    proc.update_state(BatchUpdate(len(extra), [], added, []))
    torch.set_num_threads(2)  # as vLLM's CPU worker on two cores: apply runs on one and gives them back
    out = proc.apply(logits.clone())
    threads = torch.get_num_threads()
    # Rows 0 and 1 swap places, then the last row leaves: each row must keep its own noise.
    last = len(extra) - 1
    proc.update_state(BatchUpdate(len(extra), [], [], [(0, 1, MoveDirectionality.SWAP)]))
    proc.update_state(BatchUpdate(last, [last], [], []))
    swapped = logits[[1, 0, *range(2, last)]].clone()
    moved_out = proc.apply(swapped)
    # A batch whose rows all decode greedily: the processor's sparse path (one-hot modulated argmax).
    greedy = AimLogitsProcessor(None, torch.device("cpu"), False)
    picked = case["greedy"]
    greedy.update_state(BatchUpdate(len(picked), [], [(j, *added[i][1:]) for j, i in enumerate(picked)], []))
    greedy_out = greedy.apply(logits[picked].clone())
    errors = []
    for bad in case["bad"]:
        try:
            AimLogitsProcessor.validate_params(SamplingParams(max_tokens=8, extra_args=bad))
        except ValueError as exc:
            errors.append(str(exc))
        else:
            errors.append("")
    # vLLM's own parsers read the supervisor's command and the gateway's request body.
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(case["command"])
    request = CompletionRequest.model_validate(case["body"])
    scheduling = {"policy": args.scheduling_policy, "priority": request.priority}
    torch.save(
        {
            "out": out,
            "moved_out": moved_out,
            "greedy_out": greedy_out,
            "errors": errors,
            "scheduling": scheduling,
            "threads": threads,
        },
        dst,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
