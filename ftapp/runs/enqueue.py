"""The one way a run comes to exist: its folder, its spec written once, its row; all of it or none of it.

Every kind of run (training, resume, evaluation, export, serving, a compare worker, an imported bundle) is made
here, so each gets the same guarantees: the folder is new, ``spec.json`` is written once and never rewritten
(placement travels in the child's environment), the row stores the same spec, and a failure anywhere on the way
(a disk error, a duplicate, a refused reference) removes the folder and leaves no row behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftapp.run_vocabulary import RunKind, RunStatus
from ftapp.runs.launching import launch_folder
from ftapp.runs.supervisor import Supervisor
from ftapp.settings import Settings
from storage import Database, RunRecord, Transaction
from trainer.protocol import LOG_FILE, SPEC_FILE, RunSpec, write_spec

# Called with the new run's folder before its spec is written (a serve run's key file, a worker's queue folder).
Prepare = Callable[[Path], None]
# Called in the transaction that adds the row, with the row (rows of other tables that belong to the run).
AlsoAdd = Callable[[Transaction, RunRecord], None]


def enqueue(
    db: Database,
    supervisor: Supervisor,
    spec: RunSpec,
    *,
    kind: RunKind,
    name: str | None,
    prepare: Prepare | None = None,
    also: AlsoAdd | None = None,
    **row: Any,
) -> RunRecord:
    """Create a queued run (``create_run``) and wake the supervisor, which starts it when its devices are free.
    ``db``: the caller's (a demo visitor's database stamps the row with its owner)."""
    run = create_run(supervisor.settings, db, spec, kind=kind, name=name, prepare=prepare, also=also, **row)
    supervisor.wake()
    return run


def create_run(
    settings: Settings,
    db: Database,
    spec: RunSpec,
    *,
    kind: RunKind,
    name: str | None,
    prepare: Prepare | None = None,
    also: AlsoAdd | None = None,
    **row: Any,
) -> RunRecord:
    """Make ``spec.run_dir`` (new), run ``prepare`` in it, write the spec, add the row (queued; ``row``: its other
    columns) and run ``also`` in the same transaction. On any failure the folders are removed and no row is left."""
    run_dir = Path(spec.run_dir)
    values = {"log_path": str(run_dir / LOG_FILE), **row}
    run_dir.mkdir(parents=True)  # never an existing folder: the run's files must be its own
    try:
        if prepare is not None:
            prepare(run_dir)
        write_launch_spec(settings, spec)
        with db.transaction() as tx:
            run = tx.runs.add(
                id=spec.run_id,
                kind=kind,
                name=name,
                status=RunStatus.QUEUED,
                spec=json.dumps(spec.to_dict()),
                run_dir=str(run_dir),
                **values,
            )
            if also is not None:
                also(tx, run)
            return tx.runs.get(run.id) or run
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(launch_folder(settings, spec.run_id), ignore_errors=True)
        raise


def write_launch_spec(settings: Settings, spec: RunSpec) -> None:
    """Write a new run's spec where its files go and, when that is elsewhere (an FT-003 output_dir), into its
    folder in the home too: the supervisor launches only the copy in the home."""
    write_spec(spec)
    home_copy = launch_folder(settings, spec.run_id) / SPEC_FILE
    if home_copy.resolve() != (Path(spec.run_dir) / SPEC_FILE).resolve():
        home_copy.parent.mkdir(parents=True, exist_ok=True)
        write_spec(spec, home_copy)
