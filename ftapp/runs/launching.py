"""Which spec a queued run is launched with, and the command that launches it.

Only a spec ftapp wrote into the run's own folder, ``<home>/runs/<run id>``, is ever launched: the row (which an
import or a hand may have written) only names the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ftapp.ids import is_uuid
from ftapp.run_vocabulary import RunKind
from ftapp.settings import Settings
from storage import RunRecord
from trainer.protocol import SPEC_FILE, RunSpec, read_run_spec


class LaunchRefused(Exception):
    """A queued run whose row or folder is not what ftapp made: it is failed, and nothing is started."""


def launch_folder(settings: Settings, run_id: str) -> Path:
    """Where the spec of a run that ftapp launches lives: ``<home>/runs/<run id>``, always; refused for an id that is
    not a UUID (an imported ``../../x`` names no folder of this home)."""
    if not is_uuid(run_id):
        raise LaunchRefused(f"run id {run_id[:100]!r} is not a UUID, so it names no run folder of this home")
    return settings.runs_dir / run_id


def launch_command(verb: str, spec_path: Path, processes: int) -> list[str]:
    if processes > 1:
        # Several GPUs: DDP through accelerate, one process per GPU, same entry point.
        # Precision is the trainer's business (bf16 through SFTConfig), so accelerate adds none.
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "trainer",
            verb,
            str(spec_path),
        ]
    return [sys.executable, "-m", "trainer", verb, str(spec_path)]


def launch_spec(settings: Settings, run: RunRecord) -> tuple[Path, RunSpec]:
    """The spec ftapp wrote for this run into ``<home>/runs/<run id>``, and nothing else: the row (which an
    import or a hand may have written) only names the run; a row whose run_dir is not where that spec puts the
    run's files is refused, and so is an id that is not a UUID."""
    runs_dir = settings.runs_dir.resolve()
    folder = launch_folder(settings, run.id).resolve()
    spec_path = folder / SPEC_FILE
    if folder.parent != runs_dir or not spec_path.is_file() or spec_path.resolve().parent != folder:
        raise LaunchRefused(f"no spec.json that ftapp wrote in {runs_dir / run.id}")
    spec = read_run_spec(spec_path)
    where = Path(spec.run_dir).resolve() if spec.run_id == run.id else None
    if where is None or where.name != run.id or (where != folder and run.kind != RunKind.FINETUNE):
        raise LaunchRefused(f"{spec_path} is not the spec of run {run.id}")
    if not run.run_dir or Path(run.run_dir).resolve() != where:
        raise LaunchRefused(f"the run's row names the folder {str(run.run_dir)[:300]!r}, not {where}, where its spec puts its files")
    return spec_path, spec
