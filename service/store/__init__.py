"""Redis-backed tenant store, key cache, rate limiter, request records and the embedded Redis server.

Import the pieces from here; nothing in this package imports FastAPI or the model stack.
"""

from __future__ import annotations

from service.store.connection import REDIS_ERRORS, RedisUnavailable, make_redis
from service.store.embedded import EmbeddedRedis
from service.store.gate import RedisGate
from service.store.models import UNSET, FocusPref, IssuedKey, KeyInfo, Tenant
from service.store.ratelimit import LocalRateLimiter, RateDecision, RateLimiter
from service.store.requests import RequestRecords
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
    "RequestRecords",
    "Tenant",
    "TenantStore",
    "make_redis",
]
