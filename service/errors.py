"""The service's error hierarchy: one base class, one HTTP status per subclass, one response shape.

Every error the service means to report is an `AimError`. The web layer has a single handler that turns
it into ``{"error": {"code": ..., "message": ...}}`` with ``status`` and ``headers``. Messages are written
for a person and never contain a key, a key hash or a secret.
"""

from __future__ import annotations


class AimError(Exception):
    """Base class. ``code`` is a stable snake_case identifier clients may branch on."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, int(self.retry_after + 0.999)))}


class BadInput(AimError):
    """400: the request is well-formed JSON of the right schema but its values are unusable."""

    status = 400
    code = "bad_input"


class Unauthorized(AimError):
    """401: no key, an unknown key, a revoked key, or the wrong kind of token for the route."""

    status = 401
    code = "unauthorized"


class Forbidden(AimError):
    """403: the tenant's tier forbids what was asked (e.g. focus on a tier without it)."""

    status = 403
    code = "forbidden"


class NotFound(AimError):
    """404: an unknown resource, or a task the loaded model does not serve (code ``unsupported_task``)."""

    status = 404
    code = "not_found"


class PayloadTooLarge(AimError):
    """413: the body, an image or a prompt exceeds a configured limit."""

    status = 413
    code = "payload_too_large"


class InvalidRequest(AimError):
    """422: the body violates the request schema (missing field, wrong type)."""

    status = 422
    code = "invalid_request"


class RateLimited(AimError):
    """429: the tier's request rate is used up; ``retry_after`` seconds until a request is allowed."""

    status = 429
    code = "rate_limited"


class Unavailable(AimError):
    """503: the queue is full (``overloaded``) or a dependency is down (``dependency_unavailable``)."""

    status = 503
    code = "unavailable"


class ConfigError(AimError):
    """Startup or reload configuration is invalid (a model directory, tiers.yaml). Not an HTTP error."""

    status = 500
    code = "config_error"


class ClientGone(AimError):
    """499 (nginx's "client closed request"): the client disconnected before its answer; nobody reads it."""

    status = 499
    code = "client_closed_request"
