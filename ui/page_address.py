"""The page's address keeps what the user was looking at (``?tab=runs&run=<id>``), so that a reload lands there again.

The browser writes it (``history.replaceState``: no new history entry per click); the server reads it back from
the request of the page-load events, since gradio sends the page's query string with every event. What comes
back is untrusted text: a tab is used only when it is one of the page's own, a run only when it is listed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import gradio as gr

TAB = "tab"
RUN = "run"
TAB_PREFIX = "ftapp-tab-"
# The first tab is selected while the page is built, and selecting it would overwrite the address before the
# page-load events read it; so nothing is written until ``RESTORED`` ran (the page-load event of the tab bar).
RESTORED = "() => { window.ftappAddressRestored = true; }"


def remember(key: str) -> str:
    """JS for an event whose one input is the value to keep under ``key`` (none: the key is dropped)."""
    return f"""(value) => {{
  if (!window.ftappAddressRestored) return;
  const url = new URL(window.location.href);
  if (value === null || value === undefined || value === '') url.searchParams.delete({json.dumps(key)});
  else url.searchParams.set({json.dumps(key)}, String(value));
  window.history.replaceState(window.history.state, '', url);
}}"""


def tab_elem_id(tab_id: str) -> str:
    """The page's own tabs carry this elem_id, so that the browser can tell which of them is on screen."""
    return f"{TAB_PREFIX}{tab_id}"


# JS for the tab bar's select events: keep the tab on screen in the address, read from the page once it has drawn
# it. Not the event's own tab: select events of the first render can arrive late, after the user chose another.
KEEP_SHOWN_TAB = f"""() => {{
  if (!window.ftappAddressRestored) return;
  setTimeout(() => {{
    const shown = Array.from(document.querySelectorAll('.tabitem[id^="{TAB_PREFIX}"]')).find((el) => el.offsetParent !== null);
    if (shown) ({remember(TAB)})(shown.id.slice({len(TAB_PREFIX)}));
  }}, 100);
}}"""


def requested(key: str) -> str | None:
    """The value the page's address gives ``key`` in the event being handled; None outside an event or without it."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    params = getattr(request, "query_params", None) or {}
    value = params.get(key)
    return value if isinstance(value, str) and value else None


def restore_tab(tab_ids: Sequence[str]) -> Any:
    """The tab bar showing the tab the address names, when it is one of ``tab_ids``; else as it is."""
    wanted = requested(TAB)
    return gr.Tabs(selected=wanted) if wanted in tab_ids else gr.skip()
