"""``python -m trainer export SPEC_JSON``: merge, archive, register, push or convert to GGUF one adapter or model.

Exit statuses are ``trainer.run_process``'s; SIGTERM stops at once (a half-written export is left
under a temporary name, never where a finished one would be). A spec that cannot run is refused
before any heavy import; each action then imports only what it uses: the archive nothing beyond
the standard library, the push huggingface_hub, the registry mlflow, the merge torch and PEFT, the GGUF
export those and gguf (llama.cpp's converter runs in a child process of its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.export.files import card_text, refuse_secrets, shipped_files, write_archive
from trainer.protocol import ARTIFACT, DONE, EXPORT_ACTIONS, GGUF_TYPES, PROMPT_FORMATS, STARTED, ExportSpec, check_device


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
    if spec.action == "gguf":
        check_gguf_spec(spec)


def check_gguf_spec(spec: ExportSpec) -> None:
    unknown = [t for t in spec.gguf_types if t not in GGUF_TYPES]
    if not spec.gguf_types or unknown or len(set(spec.gguf_types)) != len(spec.gguf_types):
        raise ValueError(f"spec.gguf_types must be distinct types of {', '.join(GGUF_TYPES)}, got {list(spec.gguf_types)}")
    if spec.prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"spec.prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {spec.prompt_format!r}")
    source = Path(spec.source)
    if (source / "adapter_config.json").is_file():
        if spec.base is None:
            raise ValueError("spec.base is required to export an adapter as GGUF: the base model it merges into")
    elif not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source} is neither a LoRA adapter (adapter_config.json) nor a model (config.json)")


def _export(spec: ExportSpec, events: Any, cancellation: Cancellation) -> bool:
    if spec.action == "archive":
        return run_archive(spec, events)
    if spec.action == "push":
        from trainer.export.push import run_push

        return run_push(spec, events)
    if spec.action == "register":
        from trainer.export.registry import run_register

        return run_register(spec, events)
    if spec.action == "gguf":
        from trainer.export.gguf import run_gguf

        return run_gguf(spec, events)
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
