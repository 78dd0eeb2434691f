"""The Dockerfile, parsed: stages, CUDA variants, non-root runtime, healthcheck, entrypoint, build context."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib

import pytest

from .common import REPO, dockerfile, exposed_port, option
from .dockerfile import expand, parse_dockerfile

VARIANTS = {"cpu": None, "cu126": "12.6", "cu128": "12.8"}

SAMPLE = """\
# syntax=docker/dockerfile:1
ARG A=1
ARG B="x y"
FROM base:${A} AS one
RUN echo one \\
    # a comment inside a continuation
    && echo two
ENV P=/p:$PATH Q="a b"
FROM one
COPY --from=one --chown=1:1 /a /b
HEALTHCHECK --interval=5s CMD ["curl", "-f", "http://localhost/"]
"""


def test_parser_reads_stages_args_continuations_flags_and_exec_form():
    parsed = parse_dockerfile(SAMPLE)
    assert parsed.global_args == {"A": "1", "B": "x y"}
    first, second = parsed.stages
    assert (first.base, first.name, second.base, second.name) == ("base:${A}", "one", "one", None)
    assert first.all("RUN")[0].args == "echo one && echo two"
    assert first.env() == {"P": "/p:$PATH", "Q": "a b"}
    copy = second.all("COPY")[0]
    assert copy.flags == {"from": "one", "chown": "1:1"} and copy.args == "/a /b"
    health = second.all("HEALTHCHECK")[0]
    assert health.flags == {"interval": "5s"}
    assert health.exec_form() == ["curl", "-f", "http://localhost/"]
    assert expand(first.base, parsed.global_args) == "base:1"
    assert expand("${NOPE:-d}/$A", parsed.global_args) == "d/1"


def test_parser_rejects_instructions_before_from():
    with pytest.raises(ValueError, match="RUN before the first FROM"):
        parse_dockerfile("RUN true\nFROM x\n")


def test_multi_stage_with_named_stages_and_valid_copy_sources():
    parsed = dockerfile()
    names = [s.name for s in parsed.stages]
    assert len(parsed.stages) >= 4 and None not in names and len(set(names)) == len(names)
    for stage in parsed.stages:
        earlier = {s.name for s in parsed.stages[: stage.index]}
        for copy in stage.all("COPY"):
            source = copy.flags.get("from")
            assert source is None or source in earlier, (
                f"line {copy.line}: --from={source} is not an earlier stage"
            )


def test_torch_variant_arg_selects_the_wheel_index_and_the_runtime_base():
    parsed = dockerfile()
    assert parsed.global_args["TORCH_VARIANT"] == "cpu"
    runs = " ".join(r.args for r in parsed.stage("builder").all("RUN"))
    assert "https://download.pytorch.org/whl/${TORCH_VARIANT}" in runs
    assert parsed.final.base == "runtime-${TORCH_VARIANT}"
    for variant, cuda in VARIANTS.items():
        base = parsed.stage(f"runtime-{variant}").base
        if cuda is None:
            assert not base.startswith("nvidia/")
        else:
            assert re.fullmatch(rf"nvidia/cuda:{re.escape(cuda)}\.\d+-\w+-ubuntu\d+\.\d+", base), base


def test_versions_match_the_project():
    parsed = dockerfile()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert f"torch=={parsed.global_args['TORCH_VERSION']}" in pyproject["project"]["dependencies"]
    assert pyproject["project"]["requires-python"].startswith(f">={parsed.global_args['PYTHON_VERSION']}")
    makefile = (REPO / "Makefile").read_text()
    match = re.search(r"^DATA_PACKAGES\s*:=\s*((?:.*\\\n)*.*)$", makefile, re.MULTILINE)
    assert match is not None
    assert (
        shlex.split(parsed.global_args["DATA_PACKAGES"] or "") == match.group(1).replace("\\\n", " ").split()
    )


def runtime_uid() -> int:
    user = dockerfile().final.last("USER")
    assert user is not None, "the final stage sets no USER"
    return int(user.args.split(":")[0])


def test_final_stage_runs_as_a_non_root_user_it_creates():
    final = dockerfile().final
    uid = runtime_uid()
    assert uid != 0
    creates = " ".join(r.args for r in final.all("RUN"))
    assert re.search(rf"useradd\b[^&]*--uid {uid}\b", creates)
    # USER comes after every RUN so nothing in the image is left to root by mistake.
    assert final.instructions.index(final.all("USER")[-1]) > final.instructions.index(final.all("RUN")[-1])


def test_healthcheck_probes_healthz_on_the_exposed_port():
    final = dockerfile().final
    health = final.last("HEALTHCHECK")
    assert health is not None
    argv = health.exec_form()
    assert argv is not None
    urls = re.findall(r"http://[\w.]+:(\d+)(/\w+)", " ".join(argv))
    assert urls == [(str(exposed_port()), "/healthz")]
    assert {"interval", "timeout", "start-period", "retries"} <= set(health.flags)


def test_entrypoint_serves_on_the_exposed_port_with_a_model():
    final = dockerfile().final
    entry, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entry is not None and cmd is not None
    argv = (entry.exec_form() or []) + (cmd.exec_form() or [])
    assert argv[:2] == ["aimserve", "serve"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["aimserve"] == "service.cli:main"
    assert option(argv, "--host") == "0.0.0.0"
    assert int(option(argv, "--port")) == exposed_port()
    assert option(argv, "--tiers").startswith("/etc/aimserve/")
    assert option(argv, "--model")


def test_presets_are_built_without_baking_a_secret_and_land_in_the_state_dir():
    parsed = dockerfile()
    presets = parsed.stage("presets")
    build = " ".join(r.args for r in presets.all("RUN"))
    assert re.search(r"AIM_SECRET=\S+ aimserve presets build", build)
    state = presets.env()["AIM_STATE_DIR"]
    runtime_state = parsed.final.env()["AIM_STATE_DIR"]
    copies = [c.args.split() for c in parsed.final.all("COPY") if c.flags.get("from") == "presets"]
    # Only presets/ leaves the stage: `$AIM_STATE_DIR/presets/<name>` is where `--model <name>` looks.
    assert copies == [[f"{state}/presets", f"{runtime_state}/presets"]]


def dockerignored(path: str, patterns: list[str]) -> bool:
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [pattern, pattern.removeprefix("**/")]
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, c) for c in candidates for p in prefixes + parts):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_build_context_holds_what_copy_needs_and_nothing_private():
    patterns = dockerignore_patterns()
    for stage in dockerfile().stages:
        for copy in stage.all("COPY"):
            if "from" in copy.flags:
                continue
            for source in copy.args.split()[:-1]:
                assert (REPO / source).exists(), f"COPY source {source} missing"
                assert not dockerignored(source, patterns), f"COPY source {source} is in .dockerignore"
    for private in (".venv", ".aimserve", ".git", "tests/test_metrics.py", ".env", "service/__pycache__"):
        assert dockerignored(private, patterns), private
