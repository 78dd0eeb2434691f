from __future__ import annotations

import pytest

from service.errors import BadInput
from service.tiers.schema import parse_tiers
from service.tiers.tierfile import write_tier_calibration, write_tier_sigma

TIERS = """\
# tiers for the demo: keep this header
default_tier: free
tiers:
  premium:
    sigma: 0.0
    rate_limit: {requests_per_minute: 600}
    focus: {allowed: true, max_strength: 3.0}
  standard:
    sigma: 1.0   # hand-tuned
    focus: {allowed: true, max_strength: 1.5}
  free:
    target_fidelity: 0.7        # instead of sigma: solved at startup
    # a full-line comment inside the free tier
    rate_limit: {requests_per_minute: 30}   # per tenant
    focus: {allowed: false}
"""


def test_replaces_target_fidelity_in_place_keeping_everything_else(tmp_path):
    path = tmp_path / "tiers.yaml"
    path.write_text(TIERS)
    write_tier_sigma(path, "free", 1.234567, "calibrated: target_fidelity 0.7")
    text = path.read_text()
    expected = TIERS.replace(
        "target_fidelity: 0.7        # instead of sigma: solved at startup",
        "sigma: 1.2346               # calibrated: target_fidelity 0.7",
    )
    assert text == expected
    resolved = parse_tiers(text, lambda _t, _f: 0.0)
    assert resolved.tiers["free"].sigma == 1.2346
    assert resolved.tiers["free"].target_fidelity is None


def test_replaces_an_existing_sigma(tmp_path):
    path = tmp_path / "tiers.yaml"
    path.write_text(TIERS)
    write_tier_sigma(path, "standard", 0.5, "calibrated")
    lines = path.read_text().splitlines()
    assert lines[8] == "    sigma: 0.5   # calibrated"
    assert lines[:8] == TIERS.splitlines()[:8]
    assert lines[9:] == TIERS.splitlines()[9:]


def test_unknown_tier_lists_the_known_ones(tmp_path):
    path = tmp_path / "tiers.yaml"
    path.write_text(TIERS)
    with pytest.raises(BadInput, match=r"'gold' is not a tier.*premium, standard, free"):
        write_tier_sigma(path, "gold", 1.0, "x")
    assert path.read_text() == TIERS


@pytest.mark.parametrize("content", ["tiers: [1, 2]\n", "{{{\n", "just text\n"])
def test_unusable_files(tmp_path, content):
    path = tmp_path / "tiers.yaml"
    path.write_text(content)
    with pytest.raises(BadInput, match="--tier"):
        write_tier_sigma(path, "free", 1.0, "x")


def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match="cannot be read"):
        write_tier_sigma(tmp_path / "nope.yaml", "free", 1.0, "x")


def test_a_calibration_from_traffic_keeps_the_target_and_adds_the_sigma_after_it(tmp_path):
    path = tmp_path / "tiers.yaml"
    path.write_text(TIERS)
    write_tier_calibration(path, "free", 2.345678, 0.7, "re-solved from traffic")
    text = path.read_text()
    lines = text.splitlines()
    at = lines.index("    target_fidelity: 0.7        # instead of sigma: solved at startup")
    # Right after the target and the comment lines that belong to it.
    assert lines[at + 2] == "    sigma: 2.3457               # re-solved from traffic"
    assert [line for line in lines if "sigma: 2.3457" not in line] == TIERS.splitlines()
    free = parse_tiers(text, lambda _t, _f: 0.0).tiers["free"]
    assert (free.sigma, free.target_fidelity) == (2.3457, 0.7)
    write_tier_calibration(path, "free", 2.0, 0.7, "again")  # a second run replaces, never duplicates
    assert path.read_text().count("sigma:") == text.count("sigma:")
