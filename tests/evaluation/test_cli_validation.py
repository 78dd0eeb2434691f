"""Bad settings fail fast with exit code 2 and a message naming the setting (no model is loaded)."""

from __future__ import annotations

import pytest

from service.cli import main


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["eval", "utility", "--model", "digits", "--sigmas", "0:20"], "--sigmas '0:20'"),
        (["eval", "utility", "--model", "digits", "--sigmas", "0,x"], "'x' is not a number"),
        (["eval", "utility", "--model", "digits", "--repeats", "0"], "--repeats must be >= 1"),
        (["eval", "utility", "--model", "digits", "--limit", "0"], "--limit must be >= 1"),
        (["eval", "focus", "--model", "digits", "--classes", "3", "--strengths=-1,2"], "--strengths"),
        (["eval", "focus", "--model", "digits", "--classes", "3", "--sigma=-1"], "--sigma must be"),
        (["eval", "generate", "--sigmas", "2:1:1"], "below start"),
        (["eval", "generate", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["calibrate", "--model", "digits", "--target-fidelity", "1.5"], "--target-fidelity"),
        (["calibrate", "--model", "digits", "--target-accuracy", "0"], "--target-accuracy"),
        (
            ["calibrate", "--model", "digits", "--target-fidelity", "0.7", "--tier", "free"],
            "--tiers and --tier",
        ),
        (["eval", "utility", "--model", "no-such-model"], "no-such-model"),
    ],
)
def test_bad_settings_exit_2_naming_them(capsys, tmp_path, argv, fragment):
    out = [] if argv[0] == "calibrate" else ["--out", str(tmp_path / "out")]
    code, err = run(capsys, *argv, *out)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err


def test_out_must_be_a_directory(capsys, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    code, err = run(capsys, "eval", "utility", "--model", "digits", "--out", str(target))
    assert code == 2 and "is not a directory" in err


def test_unknown_tier_is_refused_before_any_work(capsys, tmp_path):
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text("default_tier: free\ntiers:\n  free:\n    sigma: 1.0\n")
    code, err = run(
        capsys,
        "calibrate",
        "--model",
        "digits",
        "--target-fidelity",
        "0.7",
        "--tiers",
        str(tiers),
        "--tier",
        "gold",
    )
    assert code == 2 and "'gold' is not a tier" in err
    assert tiers.read_text() == "default_tier: free\ntiers:\n  free:\n    sigma: 1.0\n"


def test_missing_required_arguments_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "focus", "--model", "digits", "--out", "x"])
    assert exit_info.value.code == 2
    assert "--classes" in capsys.readouterr().err
