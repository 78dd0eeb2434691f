"""The vLLM logits processor against the modulation core: same row, key and position -> the same numbers;
vLLM's own parsers accept the supervised child's command and the gateway's body (priority scheduling).

The processor runs in vLLM's own environment (``make setup-vllm``) through vLLM's real `BatchUpdate`
types (processor_run.py); the expected values come from `service.modulation` in this one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from service.modulation import SUPPRESS, ModulationBatch, RowSpec, modulate
from service.modulation.semantic import GENERATION_RESOLUTION, prompt_codes
from service.serving.generation import GenerationRequest
from service.serving.generation.sampling import SamplingBatch, choose_tokens
from service.serving.generation.vllm.config import VllmSettings
from service.serving.generation.vllm.engine import completion_body
from service.serving.generation.vllm.supervisor import VllmChild
from service.serving.generation.vllm.xargs import encode

V = 1000
ROOT = Path(__file__).resolve().parents[4]


def vllm_python() -> Path:
    python = VllmSettings.from_env().python
    if not python.is_absolute():
        python = ROOT / python
    if not python.exists():
        pytest.skip(f"vLLM's environment is not built ({python}); run `make setup-vllm`")
    return python


PROJ = (2024, 77)
PRIORITY = 2  # a tier's priority: higher is served first
ROWS = [  # (spec, temperature, top_p, tokens generated so far, projection)
    (RowSpec(0.8, (11, 12)), 0.0, None, 0, PROJ),
    (RowSpec(0.0, (13, 14)), 0.0, None, 5, PROJ),  # premium: untouched
    (RowSpec(0.5, (15, 16), (3, 9, 700), 4.0), 0.0, None, 17, PROJ),
    (RowSpec(0.0, (17, 18), (42,), 2.5, SUPPRESS), 0.0, None, 2, None),  # no semantic part
    (RowSpec(0.3, (19, 20)), 0.9, 0.8, 9, PROJ),  # sampled, keyed
    (RowSpec(0.8, (11, 12)), 0.0, None, 3, PROJ),  # same key as row 0, another position
]

GREEDY = [i for i, row in enumerate(ROWS) if row[1] == 0.0] + [len(ROWS)]  # + the row without arguments


def expected(logits: torch.Tensor, i: int, first: torch.Tensor, one_hot: bool = False) -> torch.Tensor:
    """Row ``i`` (its logits in ``logits``) modulated alone by the core at its own position, keyed by the
    codes of its first-step logits ``first`` (and drawn, when it samples): the built-in engine's steps.
    ``one_hot``: the row's chosen token as a one-hot row (what the processor returns for every row when
    none of its rows samples)."""
    spec, temperature, top_p, n, proj = ROWS[i]
    zeros = torch.zeros(1, GENERATION_RESOLUTION.tables, dtype=torch.int32)
    codes = zeros if proj is None else prompt_codes(first[None], proj)
    batch = ModulationBatch.build([spec], V, "cpu", codes)
    pos = torch.tensor([n], dtype=torch.int32)
    out = modulate(logits[None], batch, position=pos)
    if temperature > 0 or one_hot:
        sampling = SamplingBatch.build([temperature], [top_p], torch.device("cpu"))
        token = choose_tokens(out, out.argmax(-1), sampling, batch.row_keys, pos)
        out = torch.full_like(out, float("-inf"))
        out[0, token] = 0.0
    return out[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    python = vllm_python()
    tmp = tmp_path_factory.mktemp("proc")
    logits = torch.randn(len(ROWS) + 1, V, generator=torch.Generator().manual_seed(4)) * 3
    extra = [encode(GenerationRequest((1,), 4, s, t, p, (), j)) for s, t, p, _, j in ROWS] + [None]  # + plain
    bad = [
        {**extra[0], "aim_sigma": -1.0},
        {**extra[0], "aim_key": [1]},
        {k: v for k, v in extra[0].items() if k != "aim_sigma"},
        {**extra[0], "aim_lower_sigma": 0},
        {**extra[0], "aim_temperature": "hot"},
        {"unrelated": 1},  # not ours: accepted, row untouched
    ]
    child = VllmChild(Path("/models/m"), "m", VllmSettings.from_env(), max_num_seqs=4)
    premium = GenerationRequest((1, 2), 4, ROWS[1][0], priority=PRIORITY)
    case = {
        "logits": logits,
        "extra": extra,
        "outputs": [r[3] for r in ROWS] + [0],
        "bad": bad,
        "command": child.command(8000)[3:],  # after `python -m vllm.entrypoints.openai.api_server`
        "body": completion_body("m", premium, priority_scheduling=True),
        "greedy": GREEDY,
    }
    torch.save(case, tmp / "in.pt")
    subprocess.run(
        [
            str(python),
            str(Path(__file__).with_name("processor_run.py")),
            str(tmp / "in.pt"),
            str(tmp / "out.pt"),
        ],
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=600,
    )
    return {**torch.load(tmp / "out.pt"), "logits": logits}


def test_apply_equals_the_core_row_by_row(run) -> None:
    logits, out = run["logits"], run["out"]
    for i in range(len(ROWS)):
        assert torch.equal(out[i], expected(logits[i], i, logits[i])), f"row {i}"
    assert torch.equal(out[1], logits[1]), "a premium row is bit-identical"
    assert torch.equal(out[-1], logits[-1]), "a row without our arguments is untouched"
    assert not torch.equal(out[0], out[5]), "another position draws other noise"
    assert run["threads"] == 2, "apply runs on one thread and restores vLLM's setting"


def test_a_greedy_batch_gets_each_rows_modulated_argmax(run) -> None:
    """No row samples: the processor takes the sparse path and returns each row's chosen token one-hot,
    the token the core's dense `modulate` picks; the premium row and the row without arguments are
    untouched."""
    logits, out = run["logits"], run["greedy_out"]
    for j, i in enumerate(GREEDY):
        if i == len(ROWS) or (not ROWS[i][0].sigma and not ROWS[i][0].has_focus):
            assert torch.equal(out[j], logits[i]), f"row {i} untouched"
        else:
            assert torch.equal(out[j], expected(logits[i], i, logits[i], one_hot=True)), f"row {i}"


def test_rows_keep_their_noise_when_vllm_moves_them(run) -> None:
    logits, moved = run["logits"], run["moved_out"]
    # Row 1 now sits at index 0 and row 0 at index 1; each keeps the codes of its own first step.
    assert torch.equal(moved[0], expected(logits[1], 1, logits[1]))
    assert torch.equal(moved[1], expected(logits[0], 0, logits[0]))
    for i in range(2, len(ROWS)):
        assert torch.equal(moved[i], expected(logits[i], i, logits[i]))


def test_malformed_arguments_are_refused_by_name(run) -> None:
    errors = run["errors"]
    assert "sigma" in errors[0]
    assert "aim_key" in errors[1]
    assert "missing" in errors[2] and "aim_sigma" in errors[2]
    assert "unknown" in errors[3] and "aim_lower_sigma" in errors[3]
    assert "aim_temperature" in errors[4]
    assert errors[5] == ""


def test_the_child_schedules_by_priority_and_a_higher_tier_goes_first(run) -> None:
    """Priority admission into vLLM's running batch: its scheduler serves lower values first, so the
    gateway negates the tier's priority (without the policy, vLLM would refuse any priority but 0)."""
    assert run["scheduling"] == {"policy": "priority", "priority": -PRIORITY}
    assert "priority" not in completion_body("m", GenerationRequest((1,), 4, ROWS[1][0], priority=PRIORITY))
