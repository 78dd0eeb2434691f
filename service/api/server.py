"""uvicorn's server with a shutdown that never cuts a stream.

On SIGTERM uvicorn stops accepting connections and waits for the open ones up to its graceful timeout,
then cancels them mid-body. Here the app's components get ``AIM_SHUTDOWN_GRACE_S`` first: when it is
over, every generation still running ends with an error event (``shutting_down``) and ``[DONE]``, and
uvicorn's own timeout (the grace plus ``END_MARGIN_S``) leaves the handlers time to send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn

from service.serving.allocator import keep_freed_memory

END_MARGIN_S = 5.0
"""Seconds between ending the streams and uvicorn cancelling whatever is still open."""


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, grace_s: float) -> None:
        config.timeout_graceful_shutdown = int(grace_s + END_MARGIN_S + 0.999)
        super().__init__(config)
        self.grace_s = grace_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # config.app is the FastAPI app as given (loaded_app is wrapped in uvicorn's middleware).
        components = getattr(getattr(self.config.app, "state", None), "components", None)
        ender = None
        if components is not None:
            ender = asyncio.create_task(components.end_streams_after(self.grace_s))
        try:
            await super().shutdown(sockets)
        finally:
            if ender is not None:
                ender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ender


def serve(app: object, *, host: str, port: int, log_level: str, grace_s: float) -> None:
    """Run ``app`` like ``uvicorn.run`` does, with the graceful shutdown above, keeping freed tensor
    memory for reuse (`service.serving.allocator`)."""
    keep_freed_memory()
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level)  # type: ignore[arg-type]
    GracefulServer(config, grace_s).run()
