"""Shares: sliders of a share of the rows (dataset fraction, train split) whose range ftapp checks, not gradio.

A ``gr.Slider`` refuses a value outside its range itself, before the handler runs, with a message that names
neither the field nor a rule (``Value 5 is greater than maximum value 1.0.``). The browser's slider cannot leave
its range, but an API client can send anything, and ftapp's validation (FT-010, FT-011) names the field and the
range. A ``Share`` therefore passes any number on; the browser draws it as the slider it is.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.choices import _WithoutStub  # gradio would write a .pyi stub into the source tree for a new component class


class Share(gr.Slider, metaclass=_WithoutStub):
    """A slider whose value the service judges (a number, or None for "the default")."""

    is_template = True  # gradio then draws it with the Slider component of the browser

    def preprocess(self, payload: Any) -> Any:
        return payload
