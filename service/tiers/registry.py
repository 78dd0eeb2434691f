"""The tiers in force, reloaded from tiers.yaml on demand or when the file changes and has settled.

:class:`TierRegistry` keeps the last good :class:`ResolvedTiers`. A reload that fails (bad YAML, schema
violation, solver failure, unreadable file) or is refused by the guard (:mod:`service.tiers.guard`: a
removed tier's tenants would get a more generous tier without a ``migrate`` entry) changes nothing: the
error is logged, kept in :attr:`TierRegistry.last_error`, and reported to
``on_reload("failed" | "refused", sigmas_in_force)`` so metrics can count it.

The watcher reloads only a file that has stopped changing: its (mtime, size, inode) must stay the same
for ``settle_s`` seconds, so a file read while an editor or ``cp`` is still writing it is never applied
(a prefix of a valid file can be valid YAML with a missing rate limit or a truncated σ). A Kubernetes
ConfigMap update (the ``..data`` symlink swap) changes the inode at once and settles like any save.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from service.errors import BadInput, ConfigError
from service.tiers.guard import refusals
from service.tiers.schema import ResolvedTiers, SigmaSolver, Tier, parse_tiers

log = logging.getLogger(__name__)

#: Outcomes of a load attempt: applied; invalid file (or unreadable); valid but refused by the guard.
RELOAD_STATUSES: tuple[str, str, str] = ("ok", "failed", "refused")
#: How long the file must stay unchanged before the watcher loads it, and how often it looks.
SETTLE_S = 1.0
POLL_S = 0.25

ReloadHook = Callable[[str, dict[str, float]], None]
"""Called after every load attempt with (a `RELOAD_STATUSES` value, tier name -> σ in force after)."""

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
        self._from_file: ResolvedTiers | None = None  # the last good file, before live overrides
        self._last_digest: bytes | None = None
        self._signature = _stat(path)  # of the file last loaded (or rejected)
        self._seen: tuple[_Signature, float] = (self._signature, 0.0)  # last signature seen, and since when
        self._watcher: asyncio.Task[None] | None = None
        self._overrides: dict[str, tuple[Tier, float]] = {}  # tier -> (the file's tier, σ applied live)
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
        """Re-read the file now and return the tiers in force; BadInput (``invalid_tiers`` or
        ``tiers_refused``) if rejected."""
        with self._lock:
            try:
                data = self.path.read_bytes()
                self._last_digest = hashlib.sha256(data).digest()
                tiers = parse_tiers(data.decode("utf-8"), self._solver, source=str(self.path))
            except (OSError, UnicodeDecodeError, ConfigError) as exc:
                message = str(exc) if isinstance(exc, ConfigError) else f"{self.path}: {exc}"
                raise self._reject("failed", message, "invalid_tiers") from None
            problems = [] if self._current is None else refusals(self._current, tiers)
            if problems:
                raise self._reject("refused", f"{self.path}: {'; '.join(problems)}", "tiers_refused")
            self._from_file = tiers
            self._current, self.last_error = self._overridden(tiers), None
            log.info("tiers loaded from %s: %s", self.path, ", ".join(sorted(tiers.tiers)))
            self._notify("ok")
            return self._current

    def apply_sigma(self, name: str, sigma: float) -> Tier:
        """Put ``sigma`` in force for tier ``name`` now, without touching the file (BadInput if unknown).

        Counted and reported like a reload. The override outlives reloads while the file still gives that
        tier exactly what it gave when the override was applied; an edit of that tier drops it.
        """
        with self._lock:
            self.require(name)
            assert self._from_file is not None  # require() passed: tiers are loaded
            self._overrides[name] = (self._from_file.tiers[name], float(sigma))
            self._current = self._overridden(self._from_file)
            self._notify("ok")
            return self._current.tiers[name]

    def _overridden(self, tiers: ResolvedTiers) -> ResolvedTiers:
        """``tiers`` (as parsed from the file) with the live σ overrides that still apply."""
        for name, (base, _) in list(self._overrides.items()):
            if tiers.tiers.get(name) != base:
                del self._overrides[name]
        if not self._overrides:
            return tiers
        changed = {
            name: tier.model_copy(update={"sigma": self._overrides[name][1]})
            if name in self._overrides
            else tier
            for name, tier in tiers.tiers.items()
        }
        return tiers.model_copy(update={"tiers": changed})

    def _reject(self, status: str, message: str, code: str) -> BadInput:
        self.last_error = message
        log.error(
            "tiers %s, the tiers in force stay: %s", "refused" if status == "refused" else "rejected", message
        )
        self._notify(status)
        return BadInput(message, code=code)

    def poll(self, now: float, settle_s: float = SETTLE_S) -> bool:
        """One look at the file (the watcher's step): load it if it changed and has been unchanged for
        ``settle_s`` seconds. True when a load was attempted."""
        signature = _stat(self.path)
        if signature != self._seen[0]:
            self._seen = (signature, now)
            return False
        if signature == self._signature or now - self._seen[1] < settle_s:
            return False
        self._signature = signature
        if signature is None or _digest(self.path) == self._last_digest:
            return False  # gone, touched, or rewritten with the bytes already loaded or rejected
        self.reload()
        return True

    async def watch(self, interval_s: float = POLL_S, settle_s: float = SETTLE_S) -> None:
        """:meth:`poll` every ``interval_s`` (the load in a thread). Runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self.poll, time.monotonic(), settle_s)

    def start_watching(self, interval_s: float = POLL_S, settle_s: float = SETTLE_S) -> None:
        """Run :meth:`watch` as a background task of the running loop (idempotent)."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self.watch(interval_s, settle_s), name="tiers-watch")

    async def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    def _notify(self, status: str) -> None:
        if self._on_reload is not None:
            self._on_reload(status, self._current.sigmas() if self._current is not None else {})


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
