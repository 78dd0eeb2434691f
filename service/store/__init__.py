"""Redis-backed tenant store, key cache, rate limiter and the embedded Redis server.

Import the pieces from here; nothing in this package imports FastAPI or the model stack.
"""

from __future__ import annotations

from service.store.connection import REDIS_ERRORS, make_redis
from service.store.embedded import EmbeddedRedis
from service.store.gate import RedisGate, RedisUnavailable
from service.store.models import UNSET, FocusPref, IssuedKey, KeyInfo, Tenant
from service.store.ratelimit import LocalRateLimiter, RateDecision, RateLimiter
from service.store.tenants import TenantStore

__all__ = [
    "REDIS_ERRORS",
    "UNSET",
    "EmbeddedRedis",
    "FocusPref",
    "IssuedKey",
    "KeyInfo",
    "LocalRateLimiter",
    "RateDecision",
    "RateLimiter",
    "RedisGate",
    "RedisUnavailable",
    "Tenant",
    "TenantStore",
    "make_redis",
]
