"""A finished run's outputs join the registry: a trained adapter (or full model) with its lineage, a merge's model.

A name clash or an unreadable spec is noted on the run, never fatal: the run did succeed.
"""

from __future__ import annotations

from pathlib import Path

from ftapp.errors import FtappError
from ftapp.models.adapters import AdapterService, AddAdapterRequest
from ftapp.models.service import AddModelRequest, ModelService
from ftapp.run_vocabulary import RunKind
from ftapp.runs.launching import LaunchRefused, launch_folder
from ftapp.settings import Settings
from storage import Database, RunRecord
from trainer.protocol import SPEC_FILE, read_run_spec, read_spec


def register_merged(settings: Settings, models: ModelService, run: RunRecord, outputs: list[Path]) -> dict:
    """A merge's model becomes a model of its own, to serve, evaluate or export; a clash is noted, not fatal."""
    if run.kind != RunKind.EXPORT or not outputs:
        return {}
    try:
        spec = read_run_spec(launch_folder(settings, run.id) / SPEC_FILE)
        models.add(
            AddModelRequest(
                type="project",
                name=getattr(spec, "name", ""),
                location=str(outputs[-1]),
                description=f"{run.name} (export run {run.id})",
            )
        )
    except (FtappError, LaunchRefused, OSError, ValueError, TypeError, KeyError) as error:
        return {"error_text": f"merged, but not registered as a model: {error}"}
    return {}


def register_output(settings: Settings, db: Database, models: ModelService, adapters: AdapterService, run: RunRecord, output: Path) -> dict:
    """Register the adapter (or full model) with its lineage; a clash is noted, not fatal."""
    try:
        spec = read_spec(launch_folder(settings, run.id) / SPEC_FILE)  # the spec it was launched with
    except (LaunchRefused, OSError, ValueError, TypeError, KeyError) as error:
        return {"error_text": f"trained, but not registered: its spec is unreadable ({type(error).__name__}: {error})"}
    try:
        if spec.training_mode == "full":
            models.add(
                AddModelRequest(type="project", name=spec.adapter_name, location=str(output), description=f"full fine-tune by run {run.id}")
            )
        else:
            # A demo visitor's adapter is theirs, like the run that made it.
            adapters = AdapterService(settings, db.for_owner(run.owner)) if run.owner else adapters
            adapters.add(
                AddAdapterRequest(
                    name=spec.adapter_name,
                    model_id=run.base_model_id or "",
                    location=str(output),
                    run_id=run.id,
                    prompt_id=run.prompt_id,
                    description=f"{spec.method} {spec.training_mode} run {run.id}{_started_from(db, run)}",
                )
            )
    except FtappError as error:
        return {"error_text": f"trained, but not registered: {error}"}
    return {}


def _started_from(db: Database, run: RunRecord) -> str:
    # Adapters have no parent column: the run's adapter_id holds where a DPO/GRPO run started,
    # and the description says it for people.
    if not run.adapter_id:
        return ""
    with db.transaction() as tx:
        start = tx.adapters.get(run.adapter_id)
    return f", from adapter '{start.name}' ({start.id})" if start else f", from adapter {run.adapter_id}"
