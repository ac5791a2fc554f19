"""What an export run produced, read from its spec, its events and its verification file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ftapp.run_vocabulary import TERMINAL
from storage import RunRecord
from trainer.protocol import DONE, ExportSpec, read_events

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

    @property
    def finished(self) -> bool:
        return self.run.status in TERMINAL


def mlflow_ui_command(tracking_uri: str) -> str:
    return f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000"


def build_result(run: RunRecord, tracking_uri: str) -> ExportResult:
    spec = ExportSpec.from_dict(json.loads(run.spec))
    done = next((e.data for e in reversed(read_events(Path(run.run_dir or "") / "events.jsonl").events) if e.type == DONE), {})
    values: dict[str, Any] = {"run": run, "action": spec.action, "name": spec.name, "source": spec.source}
    if spec.action == "merge":
        values.update(_verification(Path(spec.run_dir) / "verification.json"))
        if spec.merged_dir.is_dir():
            values["merged_dir"] = str(spec.merged_dir)
    elif spec.action == "archive" and done and spec.archive_path.is_file():
        values["archive"] = str(spec.archive_path)
    elif spec.action == "register" and done.get("version"):
        name, version = str(done["registered_model"]), str(done["version"])
        values["registered"] = Registered(name, version, str(done.get("model_uri", "")), str(done.get("kind", "")),
                                          f"{MLFLOW_UI}/#/models/{quote(name)}/versions/{version}", mlflow_ui_command(tracking_uri))
    elif spec.action == "push" and done.get("repo_id"):
        values["pushed"] = Pushed(str(done["repo_id"]), str(done.get("repo_url", "")), str(done.get("commit_url", "")),
                                  bool(done.get("private", spec.private)))
    return ExportResult(**values)


def _verification(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {"verified": bool(data.get("verified")), "max_logit_diff": data.get("max_logit_diff"),
            "prompts_matched": data.get("prompts_matched"), "prompts": data.get("prompts"),
            "checks": list(data.get("rows") or []), "dtype": data.get("dtype"), "qlora": bool(data.get("qlora"))}
