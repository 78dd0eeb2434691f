"""The tiers in force, reloaded from tiers.yaml on demand or when the file changes.

:class:`TierRegistry` keeps the last good :class:`ResolvedTiers`. A reload that fails (bad YAML, schema
violation, solver failure, unreadable file) changes nothing: the error is logged, kept in
:attr:`TierRegistry.last_error`, and reported to ``on_reload(False, sigmas_in_force)`` so metrics can
count it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from service.errors import BadInput, ConfigError
from service.tiers.schema import ResolvedTiers, SigmaSolver, Tier, parse_tiers

log = logging.getLogger(__name__)

ReloadHook = Callable[[bool, dict[str, float]], None]
"""Called after every load attempt with (ok, tier name -> σ of the tiers in force afterwards)."""

_Signature = tuple[int, int, int] | None  # (mtime_ns, size, inode), None when the file is missing


class TierRegistry:
    """The tiers of ``path``. Nothing is read at construction: call :meth:`reload_or_raise` once at
    startup (in a thread: ``sigma_for_fidelity`` may run the model's calibration).

    Reloads are serialised by a lock and may run in any thread; reads are lock-free (the tiers object
    is replaced whole, never mutated).
    """

    def __init__(
        self, path: Path, sigma_for_fidelity: SigmaSolver, *, on_reload: ReloadHook | None = None
    ) -> None:
        self.path = path
        self._solver = sigma_for_fidelity
        self._on_reload = on_reload
        self._lock = threading.Lock()
        self._current: ResolvedTiers | None = None
        self._last_digest: bytes | None = None
        self._signature = _stat(path)
        self._watcher: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @property
    def current(self) -> ResolvedTiers:
        """The tiers in force (the last good load). RuntimeError before the first successful load."""
        if self._current is None:
            raise RuntimeError("tiers not loaded yet: call reload_or_raise() at startup")
        return self._current

    def tier_for(self, name: str) -> Tier:
        """The tenant's tier, or ``default_tier`` when that tier no longer exists."""
        return self.current.tier_for(name)

    def require(self, name: str) -> Tier:
        """The tier called ``name``; BadInput (``unknown_tier``) when it is not in force (admin input)."""
        tiers = self.current
        tier = tiers.tiers.get(name)
        if tier is None:
            known = ", ".join(sorted(tiers.tiers))
            raise BadInput(f"unknown tier {name[:64]!r}; tiers in force: {known}", code="unknown_tier")
        return tier

    def reload(self) -> bool:
        """Re-read the file now. True if the new tiers are in force; False if rejected (old ones stay)."""
        try:
            self.reload_or_raise()
        except BadInput:
            return False
        return True

    def reload_or_raise(self) -> ResolvedTiers:
        """Re-read the file now and return the tiers in force; BadInput (``invalid_tiers``) if rejected."""
        with self._lock:
            try:
                data = self.path.read_bytes()
                self._last_digest = hashlib.sha256(data).digest()
                tiers = parse_tiers(data.decode("utf-8"), self._solver, source=str(self.path))
            except (OSError, UnicodeDecodeError, ConfigError) as exc:
                message = str(exc) if isinstance(exc, ConfigError) else f"{self.path}: {exc}"
                self.last_error = message
                log.error("tiers rejected, the tiers in force stay: %s", message)
                self._notify(False)
                raise BadInput(message, code="invalid_tiers") from None
            self._current, self.last_error = tiers, None
            log.info("tiers loaded from %s: %s", self.path, ", ".join(sorted(tiers.tiers)))
            self._notify(True)
            return tiers

    async def watch(self, interval_s: float = 1.0) -> None:
        """Poll the file every ``interval_s`` and reload when its content changed. Runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            signature = _stat(self.path)
            if signature == self._signature:
                continue
            self._signature = signature
            if signature is not None and _digest(self.path) == self._last_digest:
                continue  # touched, or rewritten with the bytes already loaded or rejected
            await asyncio.to_thread(self.reload)

    def start_watching(self, interval_s: float = 1.0) -> None:
        """Run :meth:`watch` as a background task of the running loop (idempotent)."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self.watch(interval_s), name="tiers-watch")

    async def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    def _notify(self, ok: bool) -> None:
        if self._on_reload is not None:
            self._on_reload(ok, self._current.sigmas() if self._current is not None else {})


def _stat(path: Path) -> _Signature:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _digest(path: Path) -> bytes | None:
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None
