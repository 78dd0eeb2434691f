"""Where vLLM runs: a supervised child process on a loopback port, or a server given by ``AIM_VLLM_URL``.

Both are a `Backend`: a base URL, a ``ready`` flag (its ``/health`` answered 200 at the last look) that
`/readyz` and `VllmEngine.submit` read, a restart count, and ``suspect()``, which the engine calls when a
request failed so the next health check runs now. A child that exits or stops answering its health check
is killed (its whole process group) and started again, with a growing pause between tries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Protocol

import httpx

from service.serving.generation.vllm.config import VllmSettings
from service.serving.traffic import GENERATION_TOP

log = logging.getLogger(__name__)

PROCESSOR = "service.serving.generation.vllm.processor:AimLogitsProcessor"
HEALTH_EVERY_S = 1.0
HEALTH_TIMEOUT_S = 5.0
HUNG_AFTER = 3  # consecutive failed health checks of a started server
ROOT = Path(__file__).resolve().parents[4]  # the repository (or install) root that holds `service/`


class Backend(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def ready(self) -> bool: ...

    @property
    def restarts(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def suspect(self) -> None: ...


class _Watched:
    """Health polling shared by both backends."""

    def __init__(self) -> None:
        # httpx logs every request at INFO: a health check a second would drown the service's log.
        httpx_log = logging.getLogger("httpx")
        httpx_log.setLevel(max(logging.WARNING, httpx_log.level))
        self._ready = False
        self._restarts = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def restarts(self) -> int:
        return self._restarts

    def suspect(self) -> None:
        self._wake.set()

    async def _healthy(self, client: httpx.AsyncClient, url: str) -> bool:
        try:
            return (await client.get(f"{url}/health", timeout=HEALTH_TIMEOUT_S)).status_code == 200
        except httpx.HTTPError:
            return False

    async def _pause(self, seconds: float) -> None:
        """Sleep, or return early when a request failed (``suspect``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._ready = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class RemoteVllm(_Watched):
    """A vLLM server run by someone else (``AIM_VLLM_URL``): watched, never restarted from here."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url

    @property
    def url(self) -> str:
        return self._url

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="aim-vllm-health")

    async def _watch(self) -> None:
        async with httpx.AsyncClient() as client:
            while True:
                self._ready = await self._healthy(client, self._url)
                await self._pause(HEALTH_EVERY_S)


class VllmChild(_Watched):
    """vLLM's OpenAI server as a child process of the gateway, bound to 127.0.0.1 on a free port."""

    def __init__(self, model_dir: Path, served_name: str, settings: VllmSettings, max_num_seqs: int) -> None:
        super().__init__()
        self._model_dir = model_dir
        self._name = served_name
        self._settings = settings
        self._max_num_seqs = max_num_seqs
        self._port = 0
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name="aim-vllm-supervisor")

    async def stop(self) -> None:
        await super().stop()
        await self._kill()

    def command(self, port: int) -> list[str]:
        s = self._settings
        cmd = [str(s.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self._model_dir)]
        cmd += ["--served-model-name", self._name, "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--dtype", s.dtype, "--tensor-parallel-size", str(s.tensor_parallel)]
        cmd += ["--max-num-seqs", str(self._max_num_seqs), "--logits-processors", PROCESSOR]
        cmd += ["--generation-config", "vllm"]  # no sampling defaults from the model's generation_config
        cmd += ["--scheduling-policy", "priority"]  # tiers' priorities order vLLM's waiting requests
        # The engine asks for the top GENERATION_TOP raw (pre-processor) logits of every step: live fidelity
        # and the tier's traffic sample (engine.py); vLLM caps ``logprobs`` at 20 unless told.
        cmd += ["--logprobs-mode", "raw_logits", "--max-logprobs", str(GENERATION_TOP)]
        cmd += ["--enforce-eager"] if s.eager else []
        return cmd + list(s.extra_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
        env.update(
            HF_HUB_OFFLINE="1",
            VLLM_HOST_IP="127.0.0.1",  # its internal queues stay on loopback too
            VLLM_CPU_KVCACHE_SPACE=str(self._settings.kv_cache_gib),
            VLLM_USE_V2_MODEL_RUNNER="0",  # our processor implements the V1 interface
            VLLM_NO_USAGE_STATS="1",
            VLLM_DO_NOT_TRACK="1",
        )
        return env

    async def _supervise(self) -> None:
        backoff = 1.0
        async with httpx.AsyncClient() as client:
            while True:
                served = await self._run_once(client)
                self._ready = False
                self._restarts += 1
                backoff = 1.0 if served else min(backoff * 2, 60.0)
                log.warning("vLLM stopped; restarting in %.0f s (restart %d)", backoff, self._restarts)
                await asyncio.sleep(backoff)

    async def _run_once(self, client: httpx.AsyncClient) -> bool:
        """Start one child and watch it until it exits, hangs or fails to start; True if it served."""
        self._port = self._settings.port or _free_port()
        log.info("starting vLLM on %s: %s", self.url, " ".join(self.command(self._port)))
        self._proc = await asyncio.create_subprocess_exec(
            *self.command(self._port),
            env=self.environment(),
            start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.start_timeout_s
        failures, served = 0, False
        try:
            while self._proc.returncode is None:
                if await self._healthy(client, self.url):
                    failures, served = 0, True
                    if not self._ready:
                        log.info("vLLM is ready on %s", self.url)
                    self._ready = True
                elif served:
                    failures += 1
                    self._ready = False
                    if failures >= HUNG_AFTER:
                        log.error("vLLM stopped answering its health check; killing it")
                        return served
                elif loop.time() > deadline:
                    log.error("vLLM did not become ready within %.0f s", self._settings.start_timeout_s)
                    return served
                await self._pause(HEALTH_EVERY_S)
            log.error("vLLM exited with status %s", self._proc.returncode)
            return served
        finally:
            self._ready = False
            await self._kill()

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
