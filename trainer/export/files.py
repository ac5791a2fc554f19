"""Which files of an adapter or model directory leave the machine, and the archive of them. Standard library only.

Shipped: everything in the directory except training leftovers (``training_args.bin`` is a pickle of the
run's arguments, unsafe to load and useless to a user) and the directory's own README.md, which the
model card rendered by ftapp replaces (PEFT writes a template card naming local paths). Before anything
is archived, registered or pushed, every small text file is scanned for the HF token this process holds.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from trainer.protocol import ExportSpec

CARD_FILE = "README.md"
LEFT_BEHIND = frozenset({"training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"})
TEXT_SUFFIXES = (".json", ".md", ".txt", ".jinja", ".yaml", ".yml", ".model", ".py")
SCAN_LIMIT_BYTES = 50_000_000  # tokenizer.json of large vocabularies is ~20 MB; weights are never text
TOKEN_ENV_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_ACCESS_TOKEN")


def shipped_files(source: Path) -> list[Path]:
    """The files to ship, relative to ``source``, sorted; the model card is added separately."""
    files = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or relative.name in LEFT_BEHIND or relative.as_posix() == CARD_FILE:
            continue
        if relative.parts[0].startswith("checkpoint-"):  # a training output dir may hold its checkpoints
            continue
        files.append(relative)
    if not files:
        raise FileNotFoundError(f"{source} holds no files to export")
    return files


def card_text(spec: ExportSpec) -> str | None:
    """The model card to ship: the rendered one, else the source's own README.md, else none."""
    if spec.model_card:
        return spec.model_card
    own = Path(spec.source) / CARD_FILE
    return own.read_text(encoding="utf-8") if own.is_file() else None


def secrets_in_environment() -> list[str]:
    return [value for name in TOKEN_ENV_NAMES if len(value := os.environ.get(name, "")) >= 8]


def refuse_secrets(source: Path, files: list[Path], card: str | None) -> None:
    """Fail before anything is written or sent when a shipped text file contains the HF token."""
    secrets = secrets_in_environment()
    if not secrets:
        return
    texts = [("model card", card or "")]
    for relative in files:
        path = source / relative
        if path.suffix in TEXT_SUFFIXES and path.stat().st_size <= SCAN_LIMIT_BYTES:
            texts.append((relative.as_posix(), path.read_text(encoding="utf-8", errors="replace")))
    leaking = [name for name, text in texts if any(secret in text for secret in secrets)]
    if leaking:
        raise ValueError(f"refusing to export: the Hugging Face token appears in {', '.join(leaking)}")


def write_archive(source: Path, files: list[Path], card: str | None, target: Path, top: str) -> Path:
    """``target`` (.tar.gz): ``top/<file>`` for every shipped file and the card; written whole, then renamed."""
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        for relative in files:
            archive.add(source / relative, arcname=f"{top}/{relative.as_posix()}", recursive=False)
        if card is not None:
            data = card.encode("utf-8")
            info = tarfile.TarInfo(f"{top}/{CARD_FILE}")
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    os.replace(partial, target)
    return target
