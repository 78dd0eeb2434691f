"""The batcher's queue: strict priority between tiers, round-robin by row between tenants of a priority.

A tenant that queues 300 rows and one that queues 1 row at the same priority alternate row by row, so the
small request waits for at most one row of each other tenant, not for the whole flood (deficit
round-robin with a quantum of one row). A higher priority is always served first: lower priorities get
what is left, which the rate limits of the higher tiers keep bounded. One ``take`` (one batch) holds rows
of a single priority: rows of a lower tier would otherwise fill a premium row's batch up to its cost
limit and make the premium row wait for their compute.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

E = TypeVar("E")


class FairQueue(Generic[E]):
    """Entries by (priority, tenant); ``take`` pops them in the fair order described above."""

    def __init__(self) -> None:
        # priority -> tenant -> that tenant's entries; the OrderedDict's order is the round-robin order.
        self._levels: dict[int, OrderedDict[str, deque[E]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, priority: int, tenant: str, entries: Iterable[E]) -> None:
        level = self._levels.setdefault(priority, OrderedDict())
        queue = level.setdefault(tenant, deque())
        before = len(queue)
        queue.extend(entries)
        self._size += len(queue) - before

    def top(self) -> int | None:
        """The highest priority with entries queued (dead ones included), None when empty."""
        return max(self._levels, default=None)

    def ahead_of(self, priority: int) -> int:
        """Entries that a new entry of ``priority`` would wait behind (same or higher priority)."""
        return sum(len(q) for p, level in self._levels.items() if p >= priority for q in level.values())

    def take(
        self,
        room: int,
        cost_room: float,
        cost: Callable[[E], float],
        dead: Callable[[E], bool],
        only: int | None = None,
        spent: float = 0.0,
    ) -> list[E]:
        """Pop up to ``room`` live entries of the highest priority present whose cost, added to the
        ``spent`` a forming batch already holds, fits ``cost_room``; ``dead`` ones are discarded on the
        way. The first entry of an empty batch (``spent`` 0) is taken whatever its cost (a batch always
        makes progress). ``only``: take from that priority alone (a forming batch)."""
        out: list[E] = []
        started = spent > 0
        levels = sorted(self._levels, reverse=True) if only is None else [only] * (only in self._levels)
        for priority in levels:
            level = self._levels[priority]
            while level and len(out) < room:
                tenant, queue = next(iter(level.items()))
                entry = queue[0]
                if dead(entry):
                    self._pop(level, tenant, queue)
                    continue
                if (out or started) and spent + cost(entry) > cost_room:
                    return out
                self._pop(level, tenant, queue)
                out.append(entry)
                spent += cost(entry)
                if tenant in level:
                    level.move_to_end(tenant)
            if not level:
                del self._levels[priority]
            if out:
                break
        return out

    def drain(self) -> list[E]:
        """Remove and return every entry (shutdown)."""
        out = [e for level in self._levels.values() for q in level.values() for e in q]
        self._levels.clear()
        self._size = 0
        return out

    def _pop(self, level: OrderedDict[str, deque[E]], tenant: str, queue: deque[E]) -> None:
        queue.popleft()
        self._size -= 1
        if not queue:
            del level[tenant]
