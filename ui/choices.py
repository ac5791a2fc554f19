"""Pickers: dropdowns whose choices a tab loads from the database when it opens.

A plain ``gr.Dropdown`` refuses a value that is not among the choices this session was last sent.
Those are filled only when a tab is shown, so an API client that never showed it (gradio_client
calling ``/preflight`` straight away) would have every real id refused. What an id may name is the
service's call anyway: it must exist in the database and, in the public demo, be the visitor's own
or shared. A ``Picker`` therefore passes any string on (a list of strings when multiselect); the
browser draws it as the dropdown it is, with the same choices.
"""

from __future__ import annotations

from abc import ABCMeta
from typing import Any

import gradio as gr
from gradio.component_meta import ComponentMeta


class _WithoutStub(ComponentMeta):
    """gradio's ComponentMeta also writes a ``.pyi`` stub beside the module of every component class it
    builds: into this source tree, at import. ``Picker`` defines no ``__init__`` and no ``EVENTS``, the
    only other things ComponentMeta handles, so ABCMeta builds it as it is."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any]) -> Any:
        return ABCMeta.__new__(mcs, name, bases, attrs)


class Picker(gr.Dropdown, metaclass=_WithoutStub):
    """A dropdown of ids (or names) the service judges, not the choices this session was last sent."""

    is_template = True  # gradio then draws it with the Dropdown component of the browser

    def preprocess(self, payload: Any) -> Any:
        if payload is None:
            return None
        values = payload if isinstance(payload, list) else [payload]
        if isinstance(payload, list) != bool(self.multiselect) or not all(isinstance(v, str) for v in values):
            wanted = "a list of strings" if self.multiselect else "a string"
            raise gr.Error(f"{self.label or 'Value'}: expected {wanted}, got {payload!r}")
        return payload

    def api_info(self) -> dict[str, Any]:
        # No enum: the choices a page happened to load are not the ones an API caller may send.
        one = {"type": "string"}
        return {"type": "array", "items": one} if self.multiselect else one
