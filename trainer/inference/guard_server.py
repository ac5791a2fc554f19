"""The request guard's HTTP server: uvicorn in a thread of the ``python -m trainer serve`` process, on the
port clients are given, started and stopped by that process."""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.applications import Starlette

from trainer.inference.serve_requests import Limits


class GuardServer:
    """The guard's uvicorn in a thread of the serve process; uvicorn leaves signals to the main thread."""

    def __init__(self, app: Starlette, host: str, port: int, limits: Limits):
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http="h11",
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=5,
            limit_concurrency=max(64, 4 * (limits.max_concurrent + limits.max_queue)),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="serve-guard", daemon=True)

    def start(self, timeout_s: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the request guard did not start (is its port taken?); see the log above")
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
