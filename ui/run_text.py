"""How a run reads in text, shared by the tabs that show runs: icons, progress bars, durations, why one failed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from ftapp.run_vocabulary import TERMINAL, RunStatus
from ftapp.runs import duration, failure_summary

STATUS_ICONS = {RunStatus.QUEUED: "⏳", RunStatus.RUNNING: "▶", RunStatus.SUCCEEDED: "✅", RunStatus.FAILED: "❌", RunStatus.CANCELLED: "⏹"}
FINISHED = TERMINAL
BAR_CELLS = 24


class RunLike(Protocol):
    """The fields of a run record these helpers read (a RunRecord; tests may pass lookalikes)."""

    id: str
    name: str | None
    kind: str
    status: str
    step: int | None
    total_steps: int | None
    eta_s: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class FailedRun(Protocol):
    error_cause: str | None
    error_text: str | None


def failure_lines(run: FailedRun) -> list[str]:
    """Why a run failed, as Markdown lines: the cause and the supervisor's summary (the log's tail is in the Runs tab).
    Five backticks: a log line of three (a markdown-printing library) cannot close the block early."""
    return [f"**Failed ({run.error_cause or 'unknown'}):**", "`````text", failure_summary(run.error_text), "`````"]


def status_label(status: str) -> str:
    # The word stays next to the icon: icons alone are ambiguous and invisible to screen readers.
    return f"{STATUS_ICONS.get(status, '?')} {status}"


def run_label(run: RunLike) -> str:
    """A run as a picker shows it: icon, name, when, and enough of the id to tell runs apart."""
    return f"{STATUS_ICONS.get(run.status, '?')} {run.name or run.kind} · {local_time(run.created_at)} · {run.id[:8]}"


def local_time(moment: datetime | None) -> str:
    # Stored in UTC; shown in the workstation's zone, which is the user's clock.
    return "" if moment is None else f"{moment.astimezone():%Y-%m-%d %H:%M}"


def elapsed_s(run: RunLike, now: datetime | None = None) -> float | None:
    """Seconds the run has trained (so far, or in all once finished)."""
    if run.started_at is None:
        return None
    end = run.finished_at or now or datetime.now(UTC)
    return (end - run.started_at).total_seconds()


def progress_fraction(run: RunLike) -> float | None:
    if run.status == RunStatus.SUCCEEDED:
        return 1.0
    if not run.total_steps or run.step is None:
        return None
    return max(0.0, min(1.0, run.step / run.total_steps))


def progress_bar(fraction: float | None, cells: int = BAR_CELLS) -> str:
    """A text bar: it survives every markdown sanitiser and table cell, unlike an HTML <progress>."""
    if fraction is None:
        return "░" * cells
    filled = int(round(fraction * cells))
    return "█" * filled + "░" * (cells - filled)


def progress_text(run: RunLike) -> str:
    """ "step 3 of 10 (30%) · ETA 12 s" — whatever of that is known."""
    if run.status == RunStatus.QUEUED:
        return "waiting for its devices"
    parts = []
    if run.step is not None:
        parts.append(f"step {run.step} of {run.total_steps}" if run.total_steps else f"step {run.step}")
    elif run.status == RunStatus.RUNNING:
        parts.append("loading the model and data")
    fraction = progress_fraction(run)
    if fraction is not None and run.status == RunStatus.RUNNING:
        parts.append(f"{fraction:.0%}")
    if run.status == RunStatus.RUNNING and run.eta_s is not None:
        parts.append(f"ETA {duration(run.eta_s)}")
    return " · ".join(parts)
