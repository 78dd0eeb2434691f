"""This package's one vLLM behind the gateway (live_vllm.py): started by the first test that asks for it and
stopped after the package's last test, so the tests after it (Redis timeouts among them) do not share two
cores with an idle vLLM."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live import LiveService
from tests.serving.generation.vllm.live_vllm import serve_on_vllm


@pytest.fixture(scope="package")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    yield from serve_on_vllm(tmp_path_factory.mktemp("vllm"))
