"""Buttons that stop something (a run, an endpoint, a compare worker): red and live while there is something to stop,
grey and dead otherwise. A disabled red button still reads as a live one."""

from __future__ import annotations

import gradio as gr

LIVE, DEAD = "stop", "secondary"  # the button variants


def stop_button(live: bool) -> gr.Button:
    """An update of a stop button: live (red) only while there is something to stop."""
    return gr.Button(interactive=live, variant=LIVE if live else DEAD)
