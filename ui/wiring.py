"""Attaching module-level handlers to the services and to the page's events."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import gradio as gr

from ftapp.services import Services
from ui.run_text import run_label
from ui.visitors import services_for

PRIVATE = "private"  # api_visibility of internal wiring: no API endpoint, the page still calls it
View = TypeVar("View", bound=NamedTuple)


def bind(handler: Callable[..., Any], services: Services) -> Callable[..., Any]:
    """``handler`` with the services of whoever sent the event as its first argument (``services`` in the local
    app, the visitor's own in the public demo: ``ui.visitors.services_for``), keeping its name and docstring.

    gradio describes an API endpoint with the function's docstring and names its parameters after
    the function's: it is shown the handler's signature less ``services`` (``functools.wraps`` would
    show all of it, and gradio would count ``services`` as an input), and a generator stays one, so
    that gradio streams it.
    """
    if inspect.isgeneratorfunction(handler):

        def bound(*args: Any, **kwargs: Any) -> Any:
            yield from handler(services_for(services), *args, **kwargs)
    else:

        def bound(*args: Any, **kwargs: Any) -> Any:
            return handler(services_for(services), *args, **kwargs)

    bound.__name__, bound.__doc__ = handler.__name__, handler.__doc__
    bound.__signature__ = inspect.signature(functools.partial(handler, services))  # type: ignore[attr-defined]
    return bound


def bind_request(handler: Callable[[Services, Any], Any], services: Services, build: Callable[..., Any]) -> Callable[..., Any]:
    """``handler(services, build(**values))``: an event's named inputs become one typed request.

    Wire it with ``inputs_kwargs`` keyed by ``build``'s parameter names; gradio gives the API
    endpoint the same parameter names.
    """

    def call(**values: Any) -> Any:
        return handler(services_for(services), build(**values))

    call.__name__, call.__doc__ = handler.__name__, handler.__doc__
    return call


def named_inputs(widgets: Mapping[str, gr.components.Component], build: Callable[..., Any]) -> dict[str, Any]:
    """``widgets`` as ``inputs_kwargs`` for ``bind_request``, refused at build time unless they are
    exactly ``build``'s parameters (a missing one would otherwise fail only on the first click)."""
    wanted = list(inspect.signature(build).parameters)
    if sorted(widgets) != sorted(wanted):
        raise ValueError(f"{getattr(build, '__name__', build)} takes {wanted}, the widgets are {list(widgets)}")
    return {name: widgets[name] for name in wanted}


def unchanged(view: type[View]) -> View:
    """Every output of ``view`` (a NamedTuple of a handler's outputs) left as the page shows it."""
    return view._make(gr.skip() for _ in view._fields)


def on_show(
    tab: gr.Tab,
    fn: Callable[..., Any],
    outputs: Sequence[gr.components.Component],
    inputs: Sequence[gr.components.Component] = (),
    api_name: str | None = None,
) -> None:
    """Run ``fn`` on every page load and whenever ``tab`` is selected.

    The database is the only state: page load makes a reload show everything again, and tab
    select picks up what another tab, the CLI or the background demo build registered since.
    ``inputs`` lets ``fn`` keep what the user chose (the current value of a picker). With
    ``api_name``, the tab's listing is also an API endpoint of that name.
    """
    # gr.on without triggers runs on page load AND on every change of its inputs: with the pickers as
    # inputs, choosing an item would re-run the refresh and race the choice. A fresh page has chosen
    # nothing yet, so page load passes None for every input.
    blank = [None] * len(inputs)

    def on_load() -> Any:
        return fn(*blank)

    gr.on(None, on_load, inputs=[], outputs=list(outputs), show_progress="hidden", api_visibility=PRIVATE)
    tab.select(
        fn,
        inputs=list(inputs),
        outputs=list(outputs),
        show_progress="hidden",
        api_name=api_name,
        api_visibility="public" if api_name else PRIVATE,
    )


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
    return gr.Dropdown(choices=[(run_label(r), r.id) for r in runs], value=selected if selected in ids else (ids[0] if ids else None))
