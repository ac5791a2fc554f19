"""``python -m trainer infer SPEC_JSON``: a persistent worker that answers compare requests for one base model.

The file protocol is documented on ``trainer.protocol.InferenceSpec``. This module is the queue
(standard library only): poll ``requests/``, take the oldest request once, hand it to the loaded
model, close the queue after ``idle_timeout_s`` without work. The model side (torch, PEFT, the
token streamer) lives in ``trainer.inference.session`` and is imported only once the spec passed
its checks. Exit statuses are ``trainer.run_process``'s; SIGTERM stops at once (an answer cut
short has nothing worth keeping).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.protocol import (
    CLOSED_REQUESTS_DIR,
    DONE,
    PROGRESS,
    REQUESTS_DIR,
    RESPONSES_DIR,
    STARTED,
    InferenceRequest,
    InferenceSpec,
    check_device,
)

POLL_S = 0.03  # the latency a request waits before it is seen; a stat of one folder costs microseconds
TAKEN_SUFFIX = ".taken"


class Session(Protocol):
    """The loaded model as the queue sees it (``trainer.inference.session.InferenceSession``)."""

    facts: dict[str, Any]  # device, device_name, model: the ``started`` event's fields

    def answer(self, request: InferenceRequest, write: Callable[[dict[str, Any]], None]) -> dict[str, Any]: ...


def main(spec_path: str) -> NoReturn:
    run_process.main("infer", spec_path, run_process.spec_reader(InferenceSpec), check_spec, _serve)


def check_spec(spec: InferenceSpec) -> None:
    check_device(spec.device)
    if not spec.idle_timeout_s > 0:
        raise ValueError(f"spec.idle_timeout_s must be > 0, got {spec.idle_timeout_s!r}")
    source = spec.model.source
    if source.startswith(("/", ".", "~")) and not Path(source).expanduser().exists():
        raise FileNotFoundError(f"base model not found: {source}")


def _serve(spec: InferenceSpec, events, cancellation: Cancellation) -> bool:
    from trainer.inference.session import InferenceSession  # the ML imports start here

    session = InferenceSession(spec)
    serve(spec, session, events)
    return True


def serve(spec: InferenceSpec, session: Session, events) -> int:
    """Answer requests until the queue has been idle for ``idle_timeout_s``; returns how many were served."""
    run_dir = Path(spec.run_dir)
    requests, responses = run_dir / REQUESTS_DIR, run_dir / RESPONSES_DIR
    requests.mkdir(parents=True, exist_ok=True)  # ftapp creates it with the run; a hand-made spec may not
    responses.mkdir(parents=True, exist_ok=True)
    events.emit(STARTED, run_id=spec.run_id, idle_timeout_s=spec.idle_timeout_s, **session.facts)
    served = 0
    idle_since = time.monotonic()
    while True:
        taken = take_oldest(requests)
        if taken is not None:
            served += 1
            answer_file(taken, responses, session, events, served)
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= spec.idle_timeout_s:
            break
        else:
            time.sleep(POLL_S)
    # Closing is a rename, so a writer either lands in the old folder (answered below) or fails to
    # write at all and starts a new worker: no request is left behind unanswered.
    closed = run_dir / CLOSED_REQUESTS_DIR
    os.replace(requests, closed)
    while (taken := take_oldest(closed)) is not None:
        served += 1
        answer_file(taken, responses, session, events, served)
    events.emit(DONE, served=served)
    return served


def take_oldest(folder: Path) -> Path | None:
    """The oldest waiting request, renamed so that it is taken exactly once; None when there is none."""
    try:
        waiting = [
            (entry.stat().st_mtime_ns, entry.name) for entry in os.scandir(folder) if entry.name.endswith(".json") and entry.is_file()
        ]
    except FileNotFoundError:
        return None
    for _, name in sorted(waiting):
        path = folder / name
        taken = path.with_name(name[: -len(".json")] + TAKEN_SUFFIX)
        try:
            os.replace(path, taken)
        except FileNotFoundError:  # gone between the listing and the rename
            continue
        return taken
    return None


def answer_file(taken: Path, responses: Path, session: Session, events, served: int) -> None:
    """Answer one taken request into ``responses/<id>.jsonl``; its failure is its own, never the worker's."""
    request_id = taken.name[: -len(TAKEN_SUFFIX)]
    with open(responses / f"{request_id}.jsonl", "a", encoding="utf-8") as out:

        def write(line: dict[str, Any]) -> None:
            out.write(json.dumps(line, allow_nan=False) + "\n")
            out.flush()  # the app tails this file while the answer is being generated

        try:
            request = InferenceRequest.from_dict(json.loads(taken.read_text(encoding="utf-8")))
            write({"accepted": True, "labels": [t.label for t in request.targets]})
            final = session.answer(request, write)
        except Exception as exc:  # any failure of one request becomes its error line
            write({"error": str(exc) or type(exc).__name__, "error_type": type(exc).__name__})
            print(f"request {request_id} failed: {type(exc).__name__}: {exc}", flush=True)
            return
        write({"done": True, **final})
    events.emit(PROGRESS, step=served, tokens_per_s=final.get("tokens_per_s"), seconds=final.get("seconds"))
