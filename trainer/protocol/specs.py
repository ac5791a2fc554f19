"""Every kind of run spec, and spec.json written and read. Imports the spec modules, so it is the last part."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from trainer.protocol.core import SPEC_FILE, EvaluationSpec, InferenceSpec, TrainSpec
from trainer.protocol.export import ExportSpec, ServeSpec

RunSpec = TrainSpec | EvaluationSpec | InferenceSpec | ExportSpec | ServeSpec
_SPEC_KINDS: dict[str, type[EvaluationSpec] | type[InferenceSpec] | type[ExportSpec] | type[ServeSpec]] = {
    "evaluate": EvaluationSpec,
    "infer": InferenceSpec,
    "export": ExportSpec,
    "serve": ServeSpec,
}


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
    return spec_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def spec_from_dict(data: Any) -> RunSpec:
    """Any run's spec from its JSON object: training specs have no ``kind``, the others name theirs.

    ValueError for anything else (not an object, an unknown kind or field, another protocol version); a spec with
    fields of the wrong shape can also raise TypeError, KeyError or AttributeError."""
    if not isinstance(data, dict):
        raise ValueError(f"a spec is a JSON object, not {type(data).__name__}")
    kind = data.get("kind")
    if kind is None:
        return TrainSpec.from_dict(data)
    reader = _SPEC_KINDS.get(kind) if isinstance(kind, str) else None
    if reader is None:
        raise ValueError(f"spec has an unknown kind {kind!r}")
    return reader.from_dict(data)
