"""`aimserve calibrate` on the real digits classifier, writing into a tiers.yaml with comments.

The printed σ is checked by keyed sampling done here: the measured fidelity over N outputs and R passes
must be within 4·sqrt(0.25 / (N·R)) + 0.001 of the target (0.25 bounds p(1-p); 0.001 is the solver's
and quadrature's slack).
"""

from __future__ import annotations

import math
import re

import pytest

from service.cli import main
from service.evaluation.calibrate import measure
from service.models import calibration_logits
from service.tiers.schema import parse_tiers

TIERS = """\
# three tiers for the digits demo
default_tier: free
tiers:
  premium:
    sigma: 0.0     # the full model
  standard:
    target_fidelity: 0.9
    focus: {allowed: true, max_strength: 1.5}
  free:
    target_fidelity: 0.7   # solved at startup unless calibrated
    # keep this line
    rate_limit: {requests_per_minute: 30}
"""


def printed_sigma(text: str) -> float:
    match = re.search(r"^sigma: ([0-9.]+)$", text, flags=re.MULTILINE)
    assert match, text
    return float(match.group(1))


def test_target_fidelity_written_into_the_tier(tmp_path, capsys, digits):
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(TIERS)
    argv = ["calibrate", "--model", "digits", "--target-fidelity", "0.7", "--limit", "500"]
    assert main([*argv, "--tiers", str(tiers), "--tier", "free"]) == 0
    sigma = printed_sigma(capsys.readouterr().out)
    assert sigma > 0
    text = tiers.read_text()
    lines = text.splitlines()
    assert (
        lines[9].startswith(f"    sigma: {sigma:.4f}")
        and "# calibrated: target_fidelity 0.7 on digits" in lines[9]
    )
    assert lines[:9] == TIERS.splitlines()[:9]
    assert lines[10:] == TIERS.splitlines()[10:]
    assert parse_tiers(text, lambda _tier, _target: 1.0).tiers["free"].sigma == pytest.approx(sigma, abs=1e-4)

    logits, _ = calibration_logits(digits, 500)
    fidelity, _ = measure(logits, None, sigma, 4)
    assert abs(fidelity - 0.7) <= 4 * math.sqrt(0.25 / (500 * 4)) + 0.001


def test_target_accuracy(capsys, digits):
    logits, labels = calibration_logits(digits, 400)
    clean = float((logits.argmax(1) == labels).double().mean())
    target = round(clean - 0.3, 3)
    assert main(["calibrate", "--model", "digits", "--target-accuracy", str(target), "--limit", "400"]) == 0
    sigma = printed_sigma(capsys.readouterr().out)
    _, acc = measure(logits, labels, sigma, 4)
    assert acc is not None
    assert abs(acc - target) <= 4 * math.sqrt(0.25 / (400 * 4)) + 0.001


def test_unreachable_target_exits_2(capsys, digits):
    assert main(["calibrate", "--model", "digits", "--target-fidelity", "0.05", "--limit", "100"]) == 2
    assert "chance" in capsys.readouterr().err
