"""RedisHealth: outage bookkeeping and probe spacing (times passed explicitly)."""

from __future__ import annotations

from service.store import RedisHealth


def test_one_probe_per_interval_while_down() -> None:
    health = RedisHealth("test", probe_interval_s=1.0)
    assert health.is_up and health.should_try(0.0) and health.down_for(5.0) is None
    health.failed(ConnectionError("refused"), now=10.0)
    assert not health.is_up and health.down_for(12.5) == 2.5
    assert not health.should_try(10.5)
    health.failed(ConnectionError("again"), now=10.9)  # later failures neither restart nor delay
    assert health.down_for(12.5) == 2.5
    assert health.should_try(11.0)
    assert not health.should_try(11.5)  # that probe is in flight: the others answer without Redis
    assert health.should_try(12.0)
    assert health.ok() is True  # the end of an outage is reported once
    assert health.ok() is False
    assert health.is_up and health.should_try(12.1)
