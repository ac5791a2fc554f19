"""What a live view last drew, so that its timer asks the database only when something can have changed.

The Runs, Evaluate, Export and Serve tabs each follow one run with a ``gr.Timer``. Each keeps a
``Drawn`` in a ``gr.State``: the tick skips the database while no run is chosen or a finished run is
on screen (it never changes again), redraws the view only when the run moved on, and redraws the
picker, whose labels carry the status icon, only when the run or its status changed.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from ui.run_text import FINISHED


@dataclass(frozen=True)
class Drawn:
    """The run a view shows, as of its last draw."""

    run_id: str
    status: str
    # What moves while the status stays: how far its events were read, an endpoint's state, and
    # any option of the view that changes what is drawn.
    progress: Hashable = None


def settled(drawn: Drawn | None, run_id: str | None) -> bool:
    """Nothing to look up: no run is chosen, or this run is on screen and finished."""
    return not run_id or (drawn is not None and drawn.run_id == run_id and drawn.status in FINISHED)


def relabels(drawn: Drawn | None, now: Drawn) -> bool:
    """The picker's labels are out of date: another run is shown now, or its status changed."""
    return drawn is None or (drawn.run_id, drawn.status) != (now.run_id, now.status)
