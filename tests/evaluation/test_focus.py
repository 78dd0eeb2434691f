"""`aimserve eval focus` on the real digits classifier.

Focusing one class touches only that class's logit, so with the same keys at every σ_f a boosted class's
recall can only grow with σ_f and a suppressed one's only shrink (exact monotonicity, no tolerance).
The sampled recall under a lone boost is also checked against the exact one (theory's
`focus_top1_probability`, Theorem 3 extended to the top competitor): |exact - sampled| <= 4·se + 1/n with
se = sqrt(mean p(1-p) / n / repeats) over the n items of that class.
"""

from __future__ import annotations

import math

import torch

from service.cli import main
from service.evaluation.datasets import subset
from service.evaluation.focus import within_budget
from service.evaluation.report import read_csv
from service.modulation.theory import focus_top1_probability
from tests.evaluation.conftest import clean_logits, held_out_subset

STRENGTHS = "0,0.5,1,2,4"
REPEATS = 3


def column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows]


def test_boost_each_class_alone(tmp_path, digits):
    out = tmp_path / "focus"
    argv = ["eval", "focus", "--model", "digits", "--classes", "8,9", "--separately", "--limit", "300"]
    assert main([*argv, "--strengths", STRENGTHS, "--repeats", str(REPEATS), "--out", str(out)]) == 0
    rows = read_csv(out / "focus.csv")
    assert [r["focus"] for r in rows] == ["8"] * 5 + ["9"] * 5
    inputs, labels = held_out_subset(digits, subset(1000, 300))
    logits = clean_logits(digits, inputs)
    clean_acc = (logits.argmax(1) == labels).double().mean().item()
    for name in ("8", "9"):
        run = [r for r in rows if r["focus"] == name]
        recall = column(run, "recall")
        assert recall == sorted(recall), recall
        assert column(run, "recall_delta")[0] == 0.0
        assert math.isclose(float(run[0]["accuracy"]), clean_acc, abs_tol=1e-6)
        # Exact recall of the boosted class at each σ_f.
        mine = labels == int(name)
        p = focus_top1_probability(logits[mine], labels[mine], column(run, "strength"))
        se = ((p * (1 - p)).mean(1) / int(mine.sum()) / REPEATS).sqrt()
        gap = (p.mean(1) - torch.tensor(recall, dtype=torch.float64)).abs()
        assert bool((gap <= 4 * se + 1.0 / int(mine.sum())).all()), (gap, se)
    table = (out / "focus_table.md").read_text()
    assert "| 8 |" in table and "| accuracy (focus on 9) |" in table
    assert (out / "focus.png").stat().st_size > 10_000


def test_suppress_together_lowers_recall(tmp_path, capsys):
    out = tmp_path / "suppress"
    argv = ["eval", "focus", "--model", "digits", "--classes", "1,7", "--suppress", "--limit", "200"]
    assert main([*argv, "--strengths", "0,2,10", "--repeats", "2", "--out", str(out)]) == 0
    rows = read_csv(out / "focus.csv")
    assert {"recall_1", "recall_7", "precision_1", "accuracy_delta", "fidelity"} <= set(rows[0])
    for name in ("1", "7"):
        recall = column(rows, f"recall_{name}")
        # Not monotone by construction (suppressing 7 can help a 1 whose rival is 7), but far lower at 10.
        assert recall[-1] < recall[0] - 0.1
    assert "| 1 |" in capsys.readouterr().out


def test_unknown_class_exits_2(tmp_path, capsys):
    code = main(
        ["eval", "focus", "--model", "digits", "--classes", "cat", "--limit", "10", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "unknown class 'cat'" in capsys.readouterr().err


def test_budget_is_the_last_strength_before_the_first_breach():
    table = [
        {"strength": s, "recall": r, "recall_delta": r - 0.5, "accuracy_delta": d}
        for s, r, d in [(0, 0.5, 0.0), (1, 0.6, -0.004), (2, 0.7, -0.006), (3, 0.8, -0.001)]
    ]
    (row,) = within_budget({"a": table}, "accuracy", 0.005)
    assert row == {
        "focus": "a",
        "strength": 1,
        "recall_at_0": 0.5,
        "recall_gain": table[1]["recall_delta"],
        "accuracy_delta": -0.004,
    }
    assert within_budget({"a": table}, "accuracy", 0.0)[0]["strength"] == 0


def test_budget_table_from_the_command(tmp_path, capsys):
    out = tmp_path / "budget"
    argv = ["eval", "focus", "--model", "digits", "--classes", "8,9", "--separately", "--limit", "300"]
    grid = ["--strengths", "0:3:0.5", "--repeats", "2", "--max-loss", "0.5"]
    assert main([*argv, *grid, "--out", str(out)]) == 0
    rows, budget = read_csv(out / "focus.csv"), read_csv(out / "budget.csv")
    assert [b["focus"] for b in budget] == ["8", "9"]
    for b in budget:
        run = [r for r in rows if r["focus"] == b["focus"]]
        deltas = column(run, "accuracy_delta")
        breach = next((i for i, d in enumerate(deltas) if d < -0.005), len(deltas))
        kept = run[breach - 1]
        assert float(b["strength"]) == float(kept["strength"])
        assert float(b["recall_gain"]) == float(kept["recall_delta"]) >= 0
    assert "| 8 |" in (out / "budget.md").read_text() and "within 0.5 point" in capsys.readouterr().out
    together = ["eval", "focus", "--model", "digits", "--classes", "8", "--max-loss", "0.5"]
    assert main([*together, "--out", str(tmp_path)]) == 2
    assert "--max-loss needs --separately" in capsys.readouterr().err
