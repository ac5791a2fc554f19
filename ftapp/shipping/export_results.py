"""What an export run produced, read from its spec, its ``done`` payload (as ingested into its row) and its
verification file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ftapp.run_vocabulary import TERMINAL
from ftapp.runs.outcome import done_payload
from ftapp.runs.specs import run_spec
from storage import RunRecord
from trainer.protocol import ExportSpec

MLFLOW_UI = "http://127.0.0.1:5000"  # where ``mlflow ui`` listens by default


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    model_uri: str
    kind: str  # adapter | model
    link: str  # the version's page in the MLflow UI
    ui_command: str  # how to start that UI on the app's store


@dataclass(frozen=True)
class Pushed:
    repo_id: str
    repo_url: str
    commit_url: str
    private: bool


@dataclass(frozen=True)
class GgufFile:
    """One GGUF type an export wrote, and how its reloaded file compared with base + adapter."""

    type: str
    path: str
    size_bytes: int
    convert_seconds: float
    verify_seconds: float
    verified: bool
    token_agreement: float  # teacher-forced: the GGUF model's top token equals base + adapter's
    tokens_agreed: int
    tokens: int
    agreement_floor: float
    prompts_matched: int  # free-running greedy answers identical token for token
    prompts: int
    max_logit_diff: float
    modelfile: str
    ollama_command: str
    ollama_created: bool
    ollama_note: str


@dataclass(frozen=True)
class ExportResult:
    run: RunRecord
    action: str
    name: str
    source: str
    verified: bool | None = None  # merge only
    max_logit_diff: float | None = None
    prompts_matched: int | None = None
    prompts: int | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)  # one row per fixed prompt
    dtype: str | None = None
    qlora: bool = False
    merged_dir: str | None = None
    archive: str | None = None
    registered: Registered | None = None
    pushed: Pushed | None = None
    gguf: list[GgufFile] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.run.status in TERMINAL


def mlflow_ui_command(tracking_uri: str) -> str:
    # The artifact root the trainers use (beside the database), in case this UI is the first to open the store.
    root = (
        f" --default-artifact-root {Path(tracking_uri.removeprefix('sqlite:///')).parent / 'mlartifacts'}"
        if tracking_uri.startswith("sqlite:///")
        else ""
    )
    return f"mlflow ui --backend-store-uri {tracking_uri}{root} --host 127.0.0.1 --port 5000"


def build_result(run: RunRecord, tracking_uri: str) -> ExportResult:
    spec = run_spec(run, ExportSpec)
    done = done_payload(run)  # None until the run said it was done
    details = done or {}  # untrusted (an import brings it too): every field is optional
    values: dict[str, Any] = {"run": run, "action": spec.action, "name": spec.name, "source": spec.source}
    if spec.action == "gguf":
        values.update(_gguf_verification(spec.verification_path))
    elif spec.action == "merge":
        values.update(_verification(Path(spec.run_dir) / "verification.json"))
        if spec.merged_dir.is_dir():
            values["merged_dir"] = str(spec.merged_dir)
    elif spec.action == "archive" and done is not None and spec.archive_path.is_file():
        values["archive"] = str(spec.archive_path)
    elif spec.action == "register" and details.get("version"):
        name, version = str(details.get("registered_model") or spec.name), str(details["version"])
        values["registered"] = Registered(
            name,
            version,
            str(details.get("model_uri", "")),
            str(details.get("kind", "")),
            f"{MLFLOW_UI}/#/models/{quote(name)}/versions/{quote(version)}",
            mlflow_ui_command(tracking_uri),
        )
    elif spec.action == "push" and details.get("repo_id"):
        values["pushed"] = Pushed(
            str(details["repo_id"]),
            str(details.get("repo_url", "")),
            str(details.get("commit_url", "")),
            bool(details.get("private", spec.private)),
        )
    return ExportResult(**values)


def _verification(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {
        "verified": bool(data.get("verified")),
        "max_logit_diff": data.get("max_logit_diff"),
        "prompts_matched": data.get("prompts_matched"),
        "prompts": data.get("prompts"),
        "checks": list(data.get("rows") or []),
        "dtype": data.get("dtype"),
        "qlora": bool(data.get("qlora")),
    }


def _gguf_verification(path: Path) -> dict[str, Any]:
    """Per type: the file and its verification; the prompt checks of every type, the type in front of the prompt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = [GgufFile(**{name: row[name] for name in GgufFile.__dataclass_fields__}) for row in data.get("types") or []]
        checks = [{**check, "prompt": f"[{row['type']}] {check.get('prompt')}"} for row in data["types"] for check in row.get("rows") or []]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # not written yet, or not ours: no details
        return {}
    return {
        "verified": bool(data.get("verified")),
        "gguf": files,
        "checks": checks,
        "max_logit_diff": max((f.max_logit_diff for f in files), default=None),
        "prompts_matched": sum(f.prompts_matched for f in files),
        "prompts": sum(f.prompts for f in files),
        "dtype": next((row.get("dtype") for row in data["types"]), None),
    }
