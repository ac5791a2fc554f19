"""Attaching module-level handlers to the services and to the page's events."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from ftapp.services import Services
from ui.run_text import run_label


def bind(handler: Callable[..., Any], services: Services) -> Callable[..., Any]:
    """``handler`` with ``services`` as its first argument, keeping its name.

    gradio names API endpoints after ``__name__``; a bare partial would make them all
    "partial". ``functools.wraps`` is not used because gradio would then read the signature
    of the unbound handler and count ``services`` as an input.
    """
    bound = functools.partial(handler, services)
    bound.__name__ = handler.__name__  # type: ignore[attr-defined]
    return bound


def on_show(tab: gr.Tab, fn: Callable[..., Any], outputs: Sequence[gr.components.Component],
            inputs: Sequence[gr.components.Component] = ()) -> None:
    """Run ``fn`` on every page load and whenever ``tab`` is selected.

    The database is the only state: page load makes a reload show everything again, and tab
    select picks up what another tab, the CLI or the background demo build registered since.
    ``inputs`` lets ``fn`` keep what the user chose (the current value of a picker).
    """
    # gr.on without triggers runs on page load AND on every change of its inputs: with the pickers as
    # inputs, choosing an item would re-run the refresh and race the choice. A fresh page has chosen
    # nothing yet, so page load passes None for every input.
    blank = [None] * len(inputs)

    def on_load() -> Any:
        return fn(*blank)

    on_load.__name__ = getattr(fn, "__name__", "on_show")
    gr.on(None, on_load, inputs=[], outputs=list(outputs), show_progress="hidden")
    tab.select(fn, inputs=list(inputs), outputs=list(outputs), show_progress="hidden")


def check_removal(ident: str | None, confirmed: bool, noun: str) -> str:
    """The id to remove, once something is chosen and the confirmation box is ticked."""
    if not ident:
        raise gr.Error(f"Choose {noun} first.")
    if not confirmed:
        raise gr.Error(f"Tick the confirmation box to remove the {noun.split(' ', 1)[-1]}.")
    return ident


def picker(choices: list[tuple[str, str]], selected: str | None) -> gr.Dropdown:
    # Without a selection only the choices change, so a refresh never clears what the user picked.
    return gr.Dropdown(choices=choices, value=selected) if selected else gr.Dropdown(choices=choices)


def run_picker(runs: Sequence[Any], selected: str | None) -> gr.Dropdown:
    """A picker of runs (newest first): the chosen run while it is listed, else the newest."""
    ids = [r.id for r in runs]
    return gr.Dropdown(choices=[(run_label(r), r.id) for r in runs],
                       value=selected if selected in ids else (ids[0] if ids else None))
