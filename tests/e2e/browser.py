"""What the browser tests share: Playwright's ``expect`` with the suite's time limit, and ``ui.build_app`` served from
this process (for tests that need the app's services at hand; tests/e2e/conftest.py starts launch.py instead)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ftapp.services import Services
from tests.e2e.conftest import free_port

UI_LIMIT_MS = 30_000  # a busy 2-core machine answers in seconds, not always in Playwright's default 5


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect  # lazy: collecting the suite never needs playwright

    playwright_expect.set_options(timeout=UI_LIMIT_MS)
    return playwright_expect(target)


@contextmanager
def served(services: Services) -> Iterator[str]:
    """The app over ``services`` on a free local port: its URL; the app and then the services closed afterwards."""
    import ui

    app = ui.build_app(services)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()
        services.close()
