"""Recognising which training-record layout a dataset uses, from its column names and a few rows.

The layouts are the ones the trainer knows how to turn into prompts:

* ``alpaca``: ``instruction`` + ``output`` (``input``, ``system``, ``history`` optional);
* ``messages``: a ``messages`` column of ``[{"role", "content"}, ...]`` (OpenAI style; an extra
  boolean ``label`` makes it KTO data, which is still read as messages);
* ``sharegpt``: a ``conversations`` column of ``[{"from", "value"}, ...]`` (extra columns such as
  ``tools`` or ``system`` are allowed);
* ``preference``: ``chosen`` + ``rejected``, next to a ``prompt``, ``conversations`` or ``messages``
  column or on their own (TRL's implicit-prompt form);
* ``plain``: anything else — the user maps columns to a prompt template by hand.

Column names are matched exactly, because the trainer later looks the columns up by these names.
"""

from __future__ import annotations

FORMATS = ("plain", "alpaca", "messages", "sharegpt", "preference")


def detect_format(columns: list[str], sample_rows: list[dict]) -> str:
    """Return the layout (one of ``FORMATS``) that ``columns`` and ``sample_rows`` follow."""
    present = set(columns)
    # Preference goes first: its prompt side is often itself a conversations/messages column.
    if {"chosen", "rejected"} <= present:
        return "preference"
    # A column merely *named* messages/conversations (say, a CSV of JSON strings) is not enough:
    # the trainer needs the turns as lists of dicts, so the sample must show them.
    if "messages" in present and _holds_turns(sample_rows, "messages", ("role", "content")):
        return "messages"
    if "conversations" in present and _holds_turns(sample_rows, "conversations", ("from", "value")):
        return "sharegpt"
    if {"instruction", "output"} <= present:
        return "alpaca"
    return "plain"


def _holds_turns(rows: list[dict], column: str, keys: tuple[str, str]) -> bool:
    """True when every non-null sample value of ``column`` is a list of turns carrying ``keys``
    and the sample holds at least one turn."""
    values = [value for row in rows if (value := row.get(column)) is not None]
    if not values or not all(isinstance(value, list) for value in values):
        return False
    turns = [turn for value in values for turn in value]
    return bool(turns) and all(isinstance(turn, dict) and all(k in turn for k in keys) for turn in turns)
