"""``python -m trainer export SPEC_JSON``: merge, archive, register or push one adapter or model.

Exit statuses are ``trainer.run_process``'s; SIGTERM stops at once (a half-written export is left
under a temporary name, never where a finished one would be). A spec that cannot run is refused
before any heavy import; each action then imports only what it uses: the archive nothing beyond
the standard library, the push huggingface_hub, the registry mlflow, the merge torch and PEFT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.export.files import card_text, refuse_secrets, shipped_files, write_archive
from trainer.protocol import ARTIFACT, DONE, EXPORT_ACTIONS, STARTED, ExportSpec, check_device


def main(spec_path: str) -> NoReturn:
    run_process.main("export", spec_path, run_process.spec_reader(ExportSpec), check_spec, _export)



def check_spec(spec: ExportSpec) -> None:
    if spec.action not in EXPORT_ACTIONS:
        raise ValueError(f"spec.action must be one of {', '.join(EXPORT_ACTIONS)}, got {spec.action!r}")
    check_device(spec.device)
    source = Path(spec.source)
    marker = "adapter_config.json" if spec.action == "merge" else None
    if not source.is_dir():
        raise FileNotFoundError(f"nothing to export: {source} is not a directory")
    if marker and not (source / marker).is_file():
        raise FileNotFoundError(f"{source} has no {marker}: only a LoRA adapter can be merged")
    if spec.action == "merge" and spec.base is None:
        raise ValueError("spec.base is required to merge: the base model the adapter was trained on")
    if spec.action == "push" and not spec.repo_id:
        raise ValueError("spec.repo_id is required to push")


def _export(spec: ExportSpec, events: Any, cancellation: Cancellation) -> bool:
    if spec.action == "archive":
        return run_archive(spec, events)
    if spec.action == "push":
        from trainer.export.push import run_push

        return run_push(spec, events)
    if spec.action == "register":
        from trainer.export.registry import run_register

        return run_register(spec, events)
    from trainer.export.merge import run_merge  # the ML imports start here

    return run_merge(spec, events)


def run_archive(spec: ExportSpec, events: Any) -> bool:
    source = Path(spec.source)
    files, card = shipped_files(source), card_text(spec)
    refuse_secrets(source, files, card)
    events.emit(STARTED, run_id=spec.run_id, action="archive", source=str(source), files=len(files))
    spec.archive_path.parent.mkdir(parents=True, exist_ok=True)
    path = write_archive(source, files, card, spec.archive_path, spec.name)
    events.emit(ARTIFACT, kind="archive", path=str(path))
    events.emit(DONE, action="archive", archive=str(path), size_bytes=path.stat().st_size, files=len(files) + (card is not None))
    return True
