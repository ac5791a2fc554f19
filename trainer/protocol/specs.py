"""Every kind of run spec, and spec.json written and read. Imports the spec modules, so it is the last part."""

from __future__ import annotations

import json
import os
from pathlib import Path

from trainer.protocol.core import SPEC_FILE, EvaluationSpec, InferenceSpec, TrainSpec
from trainer.protocol.export import ExportSpec, ServeSpec

RunSpec = TrainSpec | EvaluationSpec | InferenceSpec | ExportSpec | ServeSpec
_SPEC_KINDS: dict[str, type] = {"evaluate": EvaluationSpec, "infer": InferenceSpec, "export": ExportSpec, "serve": ServeSpec}


def write_spec(spec: RunSpec, path: Path | None = None) -> Path:
    path = Path(path or Path(spec.run_dir) / SPEC_FILE)
    temp = path.with_suffix(".partial")
    temp.write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    os.replace(temp, path)
    return path


def read_spec(path: Path) -> TrainSpec:
    return TrainSpec.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def read_run_spec(path: Path) -> RunSpec:
    """Any run's spec: training specs have no ``kind``, the others name theirs."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return _SPEC_KINDS.get(data.get("kind"), TrainSpec).from_dict(data)
