"""Records named like docker and git name them: full id, unique name, or an id prefix of 6+ characters."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

from cli.main import main
from ftapp.services import open_services
from ftapp.settings import Settings
from storage.types import utc_now
from tests.conftest import TEST_DATA

# Two runs whose ids share 8 characters, and a third whose id starts differently.
TWIN_A = "abcdef12-0000-4000-8000-00000000000a"
TWIN_B = "abcdef12-0000-4000-8000-00000000000b"
OTHER = "01234567-0000-4000-8000-00000000000c"


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def add_runs(home: str) -> None:
    """Three finished runs, queued a minute apart (OTHER last), the twins sharing a name too."""
    services = open_services(Settings.from_env(home))
    try:
        start = utc_now()
        with services.db.transaction() as tx:
            for minute, (run_id, name) in enumerate(((TWIN_A, "twin"), (TWIN_B, "twin"), (OTHER, "other"))):
                tx.runs.add(id=run_id, kind="finetune", name=name, status="failed", spec="{}", created_at=start + timedelta(minutes=minute))
    finally:
        services.close()


def test_a_dataset_is_shown_by_its_name_and_by_an_id_prefix(tmp_path, capsys):
    home = str(tmp_path / "home")
    code, out, _ = cli(
        capsys, "--home", home, "datasets", "add", str(TEST_DATA / "test_dataset_csv_healthy.csv"), "--name", "healthy", "--json"
    )
    dataset_id = json.loads(out)["id"]
    for reference in ("healthy", dataset_id[:8], dataset_id[:6], dataset_id):
        code, out, err = cli(capsys, "--home", home, "datasets", "show", reference, "--json")
        assert code == 0, err
        assert json.loads(out)["id"] == dataset_id
    code, out, _ = cli(capsys, "--home", home, "datasets", "preview", "healthy", "--json")
    assert code == 0 and json.loads(out)["total"] == 2
    # Options that name records take references too: the prompt is made for the dataset named 'healthy'.
    code, out, err = cli(
        capsys, "--home", home, "prompts", "add", "--name", "p", "--dataset", dataset_id[:8], "--template", "{input} {output}", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["dataset_id"] == dataset_id


def test_runs_are_shown_by_prefix_and_ambiguity_lists_the_candidates(tmp_path, capsys):
    home = str(tmp_path / "home")
    add_runs(home)
    code, out, err = cli(capsys, "--home", home, "runs", "show", OTHER[:8], "--json")
    assert code == 0, err
    assert json.loads(out)["run"]["id"] == OTHER
    code, out, err = cli(capsys, "--home", home, "runs", "show", "abcdef12")
    assert code == 2 and out == ""
    assert err.startswith("error: RF-001: 'abcdef12' starts the id of 2 runs; give more of the id:")
    assert f"  {TWIN_A}  twin" in err and f"  {TWIN_B}  twin" in err
    code, _, err = cli(capsys, "--home", home, "runs", "show", "twin")
    assert code == 2 and "'twin' is the name of 2 runs" in err and TWIN_A in err and TWIN_B in err
    code, out, err = cli(capsys, "--home", home, "runs", "show", "other", "--json")
    assert code == 0 and json.loads(out)["run"]["id"] == OTHER
    code, _, err = cli(capsys, "--home", home, "runs", "logs", "01234")
    assert code == 2 and "RF-001: run id prefix '01234' is too short: give at least 6 characters" in err
    # A reference that names nothing reaches the service, which reports its own rule.
    code, _, err = cli(capsys, "--home", home, "runs", "show", "ffffff99")
    assert code == 2 and err.startswith("error: RN-001: run 'ffffff99' not found")


def test_runs_list_is_newest_first(tmp_path, capsys):
    home = str(tmp_path / "home")
    add_runs(home)
    code, out, _ = cli(capsys, "--home", home, "runs", "list", "--json")
    assert [run["id"] for run in json.loads(out)] == [OTHER, TWIN_B, TWIN_A]
    code, out, _ = cli(capsys, "--home", home, "runs", "list")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [OTHER, TWIN_B, TWIN_A]


def test_adapters_list_names_the_base_model(tmp_path, capsys, demo_kit, random_adapter):
    home = str(tmp_path / "home")
    code, out, _ = cli(capsys, "--home", home, "models", "add", "--path", str(demo_kit.model_dir), "--name", "tiny-base", "--json")
    model_id = json.loads(out)["id"]
    code, out, err = cli(
        capsys, "--home", home, "adapters", "add", "--name", "tiny-lora", "--model", "tiny-base", "--path", str(random_adapter(0)), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["model_id"] == model_id
    code, out, _ = cli(capsys, "--home", home, "adapters", "list")
    header, row = out.splitlines()
    assert header.split()[:4] == ["id", "name", "type", "model"]
    assert row.split()[1:4] == ["tiny-lora", "project", "tiny-base"]
    code, out, _ = cli(capsys, "--home", home, "adapters", "show", "tiny-lora", "--json")
    assert code == 0 and json.loads(out)["name"] == "tiny-lora"


def test_a_reader_that_stops_early_is_no_error(tmp_path):
    """`ftapp runs list | head -1`: the pipe closes before ftapp writes; it ends quietly with status 0."""
    home = str(tmp_path / "home")
    add_runs(home)
    child = subprocess.Popen([sys.executable, "-m", "cli", "--home", home, "runs", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # before the child has started Python, let alone printed
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0, err
    assert err == ""


def test_runs_logs_shows_progress_lines_as_a_person_reads_them_and_raw_as_written(tmp_path, capsys):
    home = str(tmp_path / "home")
    services = open_services(Settings.from_env(home))
    try:
        folder = services.settings.runs_dir / OTHER
        folder.mkdir(parents=True)
        progress = 'FINETUNE_PROGRESS {"step": 20, "total_steps": 100, "loss": 1.23456, "tokens_per_s": 3100.4, "eta_s": 75}'
        (folder / "trainer.log").write_text(f"loading the model\n{progress}\n", encoding="utf-8")
        with services.db.transaction() as tx:
            tx.runs.add(
                id=OTHER,
                kind="finetune",
                name="other",
                status="failed",
                spec="{}",
                run_dir=str(folder),
                log_path=str(folder / "trainer.log"),
            )
    finally:
        services.close()
    code, out, err = cli(capsys, "--home", home, "runs", "logs", "other")
    assert code == 0, err
    assert out.splitlines() == ["loading the model", "step 20/100 · loss 1.235 · 3,100 tokens/s · ETA 1 min 15 s"]
    code, out, _ = cli(capsys, "--home", home, "runs", "logs", "other", "--raw")
    assert code == 0 and out.rstrip("\n").splitlines() == ["loading the model", progress]
