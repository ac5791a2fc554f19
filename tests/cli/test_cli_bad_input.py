"""The bad-input corpus, through the real CLI: each case exits non-zero with a clear error
(rule ID where one exists) on stderr, and writes nothing — no row, no copied file."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import main
from ftapp.datasets.service import AddDatasetRequest
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.services import open_services
from ftapp.settings import Settings


@dataclass(frozen=True)
class Home:
    path: Path
    dataset_id: str
    model_id: str
    files: Path


@pytest.fixture
def home(tmp_path: Path, demo_kit) -> Home:
    files = tmp_path / "files"
    files.mkdir()
    csv = files / "qa.csv"
    csv.write_text("question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n", encoding="utf-8")
    services = open_services(Settings.from_env(tmp_path / "home"))
    dataset = services.datasets.add(AddDatasetRequest(name="qa", location=str(csv)))
    model = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
    adapter_dir = files / "good-adapter"
    adapter_dir.mkdir()
    (adapter_dir / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    services.adapters.add(AddAdapterRequest(name="existing", model_id=model.id, location=str(adapter_dir)))
    services.close()
    return Home(tmp_path / "home", dataset.id, model.id, files)


def write(home: Home, name: str, content: str | bytes) -> str:
    path = home.files / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


def folder(home: Home, name: str, files: dict[str, str]) -> str:
    path = home.files / name
    path.mkdir()
    for file, text in files.items():
        (path / file).write_text(text)
    return str(path)


Case = Callable[[Home], list[str]]
HUGE = "x" * 1_000_001

CASES: dict[str, tuple[Case, str]] = {
    "wrong extension": (lambda h: ["datasets", "add", write(h, "data.txt", "a,b\n1,2\n")], "DS-003"),
    "missing file": (lambda h: ["datasets", "add", str(h.files / "nope.csv")], "DS-003"),
    "type does not match extension": (lambda h: ["datasets", "add", write(h, "d.csv", "a\n1\n"), "--type", "project_json"], "DS-003"),
    "directory given as csv": (lambda h: ["datasets", "add", folder(h, "dir", {"a.csv": "a\n1\n"}), "--type", "project_csv"], "DS-003"),
    "unknown dataset type": (lambda h: ["datasets", "add", write(h, "d.csv", "a\n1\n"), "--type", "project_xml"], "DS-001"),
    "empty csv": (lambda h: ["datasets", "add", write(h, "empty.csv", "")], "DS-005"),
    "empty json": (lambda h: ["datasets", "add", write(h, "empty.json", "")], "DS-005"),
    "empty jsonl": (lambda h: ["datasets", "add", write(h, "empty.jsonl", "\n\n")], "DS-005"),
    "empty json array": (lambda h: ["datasets", "add", write(h, "none.json", "[]")], "DS-005"),
    "csv header only": (lambda h: ["datasets", "add", write(h, "header.csv", "a,b\n")], "DS-005"),
    "malformed json": (lambda h: ["datasets", "add", write(h, "bad.json", '[{"a": 1},\n {"a": 2,,}]')], "DS-005"),
    "malformed jsonl line 3": (lambda h: ["datasets", "add", write(h, "bad.jsonl", '{"a": 1}\n{"a": 2}\n{"a": \n')], "line 3"),
    "json top-level object": (lambda h: ["datasets", "add", write(h, "obj.json", '{"rows": [{"a": 1}]}')], "DS-005"),
    "json array of scalars": (lambda h: ["datasets", "add", write(h, "scalars.json", "[1, 2, 3]")], "DS-005"),
    "jsonl line not an object": (lambda h: ["datasets", "add", write(h, "list.jsonl", '{"a": 1}\n[1, 2]\n')], "DS-005"),
    "csv ragged rows": (lambda h: ["datasets", "add", write(h, "ragged.csv", "a,b\n1,2\n3\n4,5,6\n")], "DS-005"),
    "csv duplicate columns": (lambda h: ["datasets", "add", write(h, "dup.csv", "a,a\n1,2\n")], "DS-005"),
    "csv non-utf8 bytes": (lambda h: ["datasets", "add", write(h, "latin.csv", b"a,b\ncaf\xe9,1\n")], "DS-005"),
    "jsonl non-utf8 bytes": (lambda h: ["datasets", "add", write(h, "latin.jsonl", b'{"a": "caf\xe9"}\n')], "DS-005"),
    "garbage parquet": (lambda h: ["datasets", "add", write(h, "junk.parquet", b"PAR1 not really")], "DS-005"),
    "huge csv field": (lambda h: ["datasets", "add", write(h, "huge.csv", f"a,b\n1,{HUGE}\n")], "DS-006"),
    "huge jsonl field": (lambda h: ["datasets", "add", write(h, "huge.jsonl", json.dumps({"a": HUGE}) + "\n")], "DS-006"),
    "duplicate dataset name": (lambda h: ["datasets", "add", write(h, "qa2.csv", "q\n1\n"), "--name", "qa"], "DS-004"),
    "hub dataset while offline": (lambda h: ["datasets", "add", "--hub", "tatsu-lab/alpaca"], "DS-002"),
    "preview unknown dataset": (lambda h: ["datasets", "preview", "no-such-id"], "not found"),
    "show unknown dataset": (lambda h: ["datasets", "show", "no-such-id", "--json"], "not found"),
    "prompt placeholder not a column": (
        lambda h: ["prompts", "add", "--name", "p", "--dataset", h.dataset_id, "--template", "Q: {question}\nA: {response}"],
        "PR-006",
    ),
    "prompt unbalanced brace": (
        lambda h: ["prompts", "add", "--name", "p", "--dataset", h.dataset_id, "--template", "Q: {question"],
        "PR-007",
    ),
    "prompt unknown dataset": (
        lambda h: ["prompts", "add", "--name", "p", "--dataset", "no-such-id", "--template", "{question}"],
        "PR-002",
    ),
    "generate for unknown dataset": (lambda h: ["prompts", "generate", "--dataset", "no-such-id"], "not found"),
    "adapter dir without adapter_config.json": (
        lambda h: ["adapters", "add", "--name", "a", "--model", h.model_id, "--path", folder(h, "plain", {"x.txt": "x"})],
        "AD-003",
    ),
    "adapter path is a file": (
        lambda h: ["adapters", "add", "--name", "a", "--model", h.model_id, "--path", write(h, "f.bin", "x")],
        "AD-003",
    ),
    "adapter unknown base model": (
        lambda h: ["adapters", "add", "--name", "a", "--model", "no-such-id", "--path", str(h.files / "good-adapter")],
        "AD-002",
    ),
    "adapter duplicate name": (
        lambda h: ["adapters", "add", "--name", "existing", "--model", h.model_id, "--path", str(h.files / "good-adapter")],
        "AD-001",
    ),
    "model dir without config.json": (lambda h: ["models", "add", "--path", folder(h, "nomodel", {"weights.bin": "x"})], "MD-004"),
    "model config.json not json": (lambda h: ["models", "add", "--path", folder(h, "badcfg", {"config.json": "{oops"})], "MD-004"),
    "model duplicate name": (lambda h: ["models", "add", "--path", folder(h, "m2", {"config.json": "{}"}), "--name", "tiny"], "MD-005"),
    "hub model while offline": (lambda h: ["models", "add", "--hub", "meta-llama/Llama-3.2-1B"], "MD-002"),
    "config invalid json": (lambda h: ["configs", "add", "--type", "lora_config", "--config", '{"r": 8'], "CF-002"),
    "config unknown field": (lambda h: ["configs", "add", "--type", "lora_config", "--config", '{"rank": 8}'], "CF-005"),
    "config out of range": (lambda h: ["configs", "add", "--type", "training_arguments", "--config", '{"learning_rate": -1}'], "CF-005"),
    "config secret key": (lambda h: ["configs", "add", "--type", "training_arguments", "--config", '{"hub_token": "hf_abc"}'], "CF-005"),
    "db import not json": (lambda h: ["db", "import", write(h, "x.json", "{nope")], "DB-001"),
    "db import foreign json": (lambda h: ["db", "import", write(h, "y.json", '{"datasets": []}')], "DB-001"),
    "remove unknown adapter": (lambda h: ["adapters", "remove", "no-such-id"], "not found"),
    "fsdp2 on the cpu": (
        lambda h: ["train", "--model", h.model_id, "--dataset", h.dataset_id, "--name", "x", "--gpus", "cpu", "--strategy", "fsdp2"],
        "FT-020",
    ),
}


def _state(home: Path) -> tuple[str, list[str]]:
    services = open_services(Settings.from_env(home))
    try:
        exported = services.database.export_json()
    finally:
        services.close()
    files = sorted(str(p.relative_to(home)) for p in (home / "datasets").rglob("*"))
    return exported, files


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_cleanly(case, home: Home, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    build, expected = CASES[case]
    argv = ["--home", str(home.path), *build(home)]
    before = _state(home.path)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses unknown choices itself
        code = exit_.code
    err = capsys.readouterr().err
    assert code != 0
    assert expected in err, err
    assert _state(home.path) == before


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
