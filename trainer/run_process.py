"""The process side of the run contract, shared by every run verb (sft, evaluate, infer).

Exit status: 0 after ``done``; 1 after ``failed {error_type, message}`` (or, when the spec itself
cannot be read, with only a message on stderr, since there is no events file to write to);
``EXIT_CANCELLED`` (143) on SIGTERM. A verb's ``check`` refuses a spec it cannot run before its
``body`` imports torch and friends (~10 s), and the SIGTERM handler is installed before either.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from trainer.cancellation import Cancellation
from trainer.protocol import EXIT_CANCELLED, FAILED, EventWriter, placed_device, read_run_spec

MAX_MESSAGE_CHARS = 4000
S = TypeVar("S")


class SilentEvents:
    """Events of non-main processes of a multi-GPU run: rank 0 alone reports, or every line would repeat (a rank's
    ``failed`` is the exception: ``run`` writes it)."""

    def emit(self, kind: str, /, **data: Any) -> None:
        return None

    def close(self) -> None:
        return None


def spec_reader(kind: type[S]) -> Callable[[Path], S]:
    """Reads a run spec and refuses one of another kind (an evaluation spec handed to ``sft``, say)."""

    def read(path: Path) -> S:
        spec = read_run_spec(path)
        if not isinstance(spec, kind):
            raise ValueError(f"{path} is a {spec.verb} spec, not a {kind.__name__}")
        return spec

    return read


def main(
    verb: str, spec_path: str, read: Callable[[Path], S], check: Callable[[S], None], body: Callable[[S, Any, Cancellation], bool]
) -> NoReturn:
    """Run ``body(spec, events, cancellation)`` (True: finished, False: cancelled) and exit with the contract's status."""
    # A local studio has no business pinging the hub about which model ran.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # dataloader workers fork after tokenizing
    cancellation = Cancellation().install()
    code = run(verb, Path(spec_path), read, check, body, cancellation)
    sys.stdout.flush()
    sys.stderr.flush()
    # Every event is flushed already; interpreter teardown (torch, thread pools) would cost ~1.5 s.
    os._exit(code)


def run(
    verb: str,
    spec_path: Path,
    read: Callable[[Path], S],
    check: Callable[[S], None],
    body: Callable[[S, Any, Cancellation], bool],
    cancellation: Cancellation,
) -> int:
    try:
        spec = read(spec_path)
        spec = replace(spec, device=placed_device(spec.device))  # type: ignore[type-var]
    except Exception as exc:  # no spec, no events path: stderr is all there is
        print(f"{verb} failed: cannot read the spec {spec_path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    events = EventWriter(spec.events_path, stdout=sys.stdout) if rank == "0" else SilentEvents()  # type: ignore[attr-defined]
    try:
        check(spec)
        return 0 if body(spec, events, cancellation) else EXIT_CANCELLED
    except BaseException as exc:  # the process ends here either way; the supervisor needs to know why
        traceback.print_exc()
        message = (str(exc) or type(exc).__name__)[:MAX_MESSAGE_CHARS]
        if world != "1":
            # Every rank says why it failed, named: the first failure is the run's cause (the supervisor keeps the
            # first ``failed``), the others' errors are mostly about losing it.
            message = f"rank {rank} of {world}: {message}"
        report = events if rank == "0" else EventWriter(spec.events_path)  # type: ignore[attr-defined]
        report.emit(FAILED, error_type=type(exc).__name__, message=message)
        if report is not events:
            report.close()
        return 1
    finally:
        events.close()
