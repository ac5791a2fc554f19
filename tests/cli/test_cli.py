"""The CLI as a harness uses it: real home, --json output, real subprocess for the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli.main import main
from tests.conftest import TEST_DATA


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_datasets_add_list_show_preview_as_json(tmp_path, capsys):
    home = str(tmp_path / "home")
    code, out, _ = cli(capsys, "--home", home, "datasets", "add", str(TEST_DATA / "clean_ticketing.csv"), "--name", "tickets", "--json")
    assert code == 0
    added = json.loads(out)
    assert (added["name"], added["num_rows"], added["format"]) == ("tickets", 3_088, "plain")
    code, out, _ = cli(capsys, "--home", home, "datasets", "list", "--json")
    assert [d["id"] for d in json.loads(out)] == [added["id"]]
    code, out, _ = cli(capsys, "--home", home, "datasets", "preview", added["id"], "--limit", "3", "--json")
    page = json.loads(out)
    assert page["total"] == 3_088 and [r["intent"] for r in page["rows"]] == ["cancel_ticket"] * 3
    code, out, _ = cli(capsys, "--home", home, "prompts", "generate", "--dataset", added["id"], "--json")
    generated = json.loads(out)
    assert generated["output_column"] == "intent" and "{instruction}" in generated["input_template"]
    code, out, _ = cli(
        capsys,
        "--home",
        home,
        "prompts",
        "add",
        "--name",
        "tickets-prompt",
        "--dataset",
        added["id"],
        "--template",
        generated["prompt_template"],
        "--input-template",
        generated["input_template"],
        "--completion-template",
        generated["completion_template"],
        "--json",
    )
    assert code == 0 and json.loads(out)["dataset_id"] == added["id"]
    code, out, _ = cli(capsys, "--home", home, "datasets", "list")
    assert "tickets" in out and "3088" in out


def test_configs_add_reports_deduplication_on_stderr(tmp_path, capsys):
    home = str(tmp_path / "home")
    code, first, _ = cli(capsys, "--home", home, "configs", "add", "--type", "lora_config", "--config", '{"r": 8}', "--json")
    code, again, err = cli(capsys, "--home", home, "configs", "add", "--type", "lora_config", "--config", '{ "r" : 8 }', "--json")
    assert code == 0 and json.loads(first)["id"] == json.loads(again)["id"] and err.startswith("CF-004")
    code, out, _ = cli(capsys, "--home", home, "configs", "presets", "--json")
    assert {p["name"] for p in json.loads(out)} == {"seed 001 defaults", "modern default"}


def test_db_export_import_export_is_identical(tmp_path, capsys, demo_kit):
    home, other = str(tmp_path / "a"), str(tmp_path / "b")
    assert cli(capsys, "--home", home, "models", "add", "--path", str(demo_kit.model_dir), "--name", "tiny")[0] == 0
    assert cli(capsys, "--home", home, "datasets", "add", str(demo_kit.dataset_path))[0] == 0
    assert cli(capsys, "--home", home, "db", "export", str(tmp_path / "one.json"))[0] == 0
    code, out, err = cli(capsys, "--home", other, "db", "import", str(tmp_path / "one.json"))
    assert code == 2 and "DB-003: models row 0 ('tiny'): location" in err and "--allow-root" in err
    # The importer vouches for the model's folder and the home the export came from: every path is kept.
    trusted = ["--allow-root", str(demo_kit.model_dir), "--allow-root", home]
    code, out, _ = cli(capsys, "--home", other, "db", "import", str(tmp_path / "one.json"), *trusted, "--json")
    report = json.loads(out)
    assert code == 0 and report["imported"]["models"] == 1 and report["imported"]["datasets"] == 1
    assert cli(capsys, "--home", other, "db", "export", str(tmp_path / "two.json"))[0] == 0
    assert (tmp_path / "one.json").read_text() == (tmp_path / "two.json").read_text()
    code, out, _ = cli(capsys, "--home", other, "db", "import", str(tmp_path / "one.json"), *trusted)
    assert "models: 0 imported, 1 duplicates (tiny)" in out


def test_token_is_read_from_stdin_and_never_printed(tmp_path):
    token = "hf_" + "Zz9" * 12
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_ACCESS_TOKEN")}
    home = str(tmp_path / "home")
    stored = subprocess.run(
        [sys.executable, "-m", "cli", "--home", home, "token", "set"],
        input=token + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    status = subprocess.run(
        [sys.executable, "-m", "cli", "--home", home, "token", "status", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert stored.returncode == 0 and status.returncode == 0
    assert json.loads(status.stdout)["source"] == "file"
    assert token not in stored.stdout + stored.stderr + status.stdout + status.stderr
    assert (Path(home) / "secrets" / "hf_token").read_text() == token


def test_console_script_reports_errors_with_exit_code_2(tmp_path):
    exe = Path(sys.executable).parent / "ftapp"
    result = subprocess.run(
        [str(exe), "--home", str(tmp_path / "h"), "models", "add", "--path", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and result.stderr.startswith("error: MD-004: ") and result.stdout == ""
