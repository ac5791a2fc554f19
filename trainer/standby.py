"""``python -m trainer standby``: a trainer process that has done its imports and waits for a run.

Importing torch, transformers, TRL, PEFT and bitsandbytes takes 13-16 s, more than half of the time
from ``ftapp train`` to the first loss point of an 8B model on an H200 (issue 7). The supervisor
keeps one of these ready for the devices the next run will likely get (its ``CUDA_VISIBLE_DEVICES``
is fixed at start, before CUDA is initialised) and hands it a run by writing one JSON line to its
stdin: ``{"verb", "spec", "env", "log", "cwd"}``. From then on the process IS the run, exactly as
if started with ``python -m trainer <verb> <spec>``: same pid and process group for the run
contract, stdout and stderr moved to the run's log, the run's environment (its secrets travel in
the pipe, never on disk), the verb's exit status. EOF on stdin (the app went away) ends it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import NoReturn

import trainer
from trainer import __main__ as verbs

HANDOVER_FIELDS = ("verb", "spec", "env", "log", "cwd")


def warm_up() -> None:
    """Import what every training and evaluation recipe imports; touch no GPU."""
    import trainer.recipes.sft  # noqa: F401 - torch, transformers, trl, peft, datasets and the project's own steps


def main() -> NoReturn:
    warm_up()
    print(f"standby: ready after {time.monotonic() - trainer.PROCESS_STARTED:.1f}s", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        os._exit(0)  # the supervisor closed the pipe without a run: nothing to do
    handover = json.loads(line)
    missing = [name for name in HANDOVER_FIELDS if name not in handover]
    if missing or handover["verb"] not in verbs.RUN_VERBS:
        print(f"standby: malformed handover (missing {missing}, verb {handover.get('verb')!r})", file=sys.stderr)
        os._exit(2)
    env = handover["env"]
    if env.get("CUDA_VISIBLE_DEVICES", "") != os.environ.get("CUDA_VISIBLE_DEVICES", ""):
        # CUDA reads the variable once; a run for other GPUs would silently train on these.
        print("standby: handed a run for other devices", file=sys.stderr)
        os._exit(2)
    become_run(handover)
    verbs.RUN_VERBS[handover["verb"]](handover["spec"])  # exits with the run contract's status
    os._exit(1)  # not reached


def become_run(handover: dict) -> None:
    """This process's output, directory, environment and clock become the run's."""
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(handover["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.chdir(handover["cwd"])
    os.environ.clear()
    os.environ.update(handover["env"])
    trainer.PROCESS_STARTED = time.monotonic()  # the run's "imports took" is what it really waited
