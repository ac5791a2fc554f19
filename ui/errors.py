"""The one place where service errors become messages in the browser."""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import gradio as gr

from ftapp.errors import FtappError, ValidationError

P = ParamSpec("P")
R = TypeVar("R")


def error_message(error: FtappError) -> str:
    """Every problem of a request on its own line, each with its rule ID.

    ``gr.Error`` renders its message as HTML, so the text is escaped: messages quote templates
    such as ``<Instruction>: {instruction}`` that would otherwise vanish as tags.
    """
    lines = [str(p) for p in error.problems] if isinstance(error, ValidationError) else [str(error)]
    return "<br>".join(html.escape(line) for line in lines)


def shows_errors(handler: Callable[P, R]) -> Callable[P, R]:
    """Turn an ``FtappError`` raised by a handler into a ``gr.Error`` toast.

    Anything else is a bug and keeps its traceback; gradio shows a generic error for it.
    """

    @functools.wraps(handler)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return handler(*args, **kwargs)
        except FtappError as error:
            raise gr.Error(error_message(error), print_exception=False) from error

    return wrapper
