"""GGUF files as base models (MD-006): checked here, de-quantized by ``python -m trainer import-gguf``.

The conversion needs torch and transformers, which the app process never imports, so a child process
writes an ordinary save_pretrained folder under ``<home>/models/<model id>`` and prints one JSON line
describing it (``trainer.models.gguf_import``). The model row then points at that folder; where it came
from stays in the folder's ``gguf_source.json`` and in the row's description.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ftapp import rules
from ftapp.errors import FtappError, Problem, ValidationError
from ftapp.settings import Settings

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (trainer.models.gguf_import checks them too)
# A 135M model converts in ~25 s on 2 CPU cores; a 7B one takes minutes and memory for its float weights.
IMPORT_TIMEOUT_S = 3600


@dataclass(frozen=True)
class ImportedGguf:
    """What ``python -m trainer import-gguf`` wrote and detected."""

    model_dir: Path
    architecture: str
    model_type: str
    num_parameters: int
    chat_template: bool
    quantization: str
    dtype: str
    license: str | None
    source_file: str
    source_sha256: str
    seconds: float

    @property
    def source_note(self) -> str:
        """The provenance line a model row's description carries."""
        template = "with its chat template" if self.chat_template else "without a chat template"
        return (
            f"De-quantized from the GGUF file {self.source_file} ({self.quantization.removeprefix('MOSTLY_')}, "
            f"sha256 {self.source_sha256[:16]}…) to {self.dtype}, {template}."
        )


def looks_like_gguf(path: Path) -> bool:
    """A file (not a folder) named where a model folder is expected is taken for a GGUF file, and checked as one."""
    return path.is_file() or path.suffix.lower() == ".gguf"


def gguf_problems(path: Path) -> list[Problem]:
    """MD-006: the file exists, is readable and starts with the GGUF magic bytes."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as error:
        return [Problem(rules.MODEL_GGUF_FILE, f"{path} cannot be read as a GGUF file ({error.strerror or error})", "location")]
    if magic != GGUF_MAGIC:
        return [
            Problem(
                rules.MODEL_GGUF_FILE,
                f"{path} is not a GGUF file (it does not start with the bytes 'GGUF'); point at a .gguf "
                "file or at the folder save_pretrained wrote",
                "location",
            )
        ]
    return []


def import_gguf(settings: Settings, gguf_file: Path, model_id: str) -> ImportedGguf:
    """Convert ``gguf_file`` into ``<home>/models/<model_id>`` in a trainer child; MD-006 when it cannot be converted."""
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    out_dir = settings.models_dir / model_id  # model ids are UUIDs: safe as a folder name
    request = settings.models_dir / f".{model_id}.import.json"
    log = settings.models_dir / f"{model_id}.import.log"
    request.write_text(json.dumps({"gguf_file": str(gguf_file), "out_dir": str(out_dir)}), encoding="utf-8")
    try:
        with open(log, "w", encoding="utf-8") as handle:
            # stderr to the log file, never an undrained pipe; stdout carries the one JSON line.
            result = subprocess.run(
                [sys.executable, "-m", "trainer", "import-gguf", str(request)],
                stdout=subprocess.PIPE,
                stderr=handle,
                text=True,
                timeout=IMPORT_TIMEOUT_S,
            )
    except subprocess.TimeoutExpired as error:
        raise FtappError(f"converting {gguf_file} took longer than {IMPORT_TIMEOUT_S} s; log {log}") from error
    finally:
        request.unlink(missing_ok=True)
    if result.returncode != 0:
        raise ValidationError(
            Problem(rules.MODEL_GGUF_FILE, f"{gguf_file} could not be converted: {_failure(log)} (log {log})", "location")
        )
    fields = json.loads(result.stdout.strip().splitlines()[-1])
    return ImportedGguf(
        model_dir=Path(fields["model_dir"]),
        architecture=fields["architecture"],
        model_type=fields["model_type"],
        num_parameters=int(fields["num_parameters"]),
        chat_template=bool(fields["chat_template"]),
        quantization=fields["quantization"],
        dtype=fields["dtype"],
        license=fields["license"],
        source_file=fields["source_file"],
        source_sha256=fields["source_sha256"],
        seconds=float(fields["seconds"]),
    )


def _failure(log: Path) -> str:
    """The trainer's one-line reason (``import-gguf failed: ...``), else the log's last line."""
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    reasons = [line.removeprefix("import-gguf failed: ") for line in lines if line.startswith("import-gguf failed: ")]
    return (reasons or lines or ["no output"])[-1][:500]
