"""``python -m trainer axolotl``: refused without Axolotl (never the TRL recipe instead), handed to the Python that has it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from trainer.protocol import AXOLOTL_PYTHON_ENV, DataSource, ModelSource, TrainSpec, read_events, write_spec

ROOT = Path(__file__).resolve().parents[2]


def axolotl_spec(tmp_path: Path, **changes) -> Path:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "hi", "input": "", "output": "hello"}\n')
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    values = dict(
        run_id="run",
        run_dir=str(run_dir),
        method="sft",
        training_mode="lora",
        model=ModelSource(source=str(tmp_path / "model")),
        data=DataSource(kind="project_jsonl", path=str(data)),
        adapter_name="axo",
        training={},
        device="cpu",
        framework="axolotl",
        axolotl_config={"datasets": [{"path": "x", "type": "alpaca"}], "adapter": "lora"},
    )
    spec = TrainSpec(**{**values, **changes})  # type: ignore[arg-type]
    return write_spec(spec)


def run_trainer(spec_path: Path, **env: str) -> tuple[int, list[dict]]:
    environ = {k: v for k, v in os.environ.items() if k != AXOLOTL_PYTHON_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "axolotl", str(spec_path)], cwd=ROOT, env={**environ, **env}, capture_output=True, timeout=120
    )
    events = read_events(spec_path.parent / "events.jsonl").events
    return done.returncode, [{"type": e.type, **e.data} for e in events]


def test_without_axolotl_the_run_fails_and_says_how_to_install_it(tmp_path: Path):
    code, events = run_trainer(axolotl_spec(tmp_path))
    assert code == 1
    (failed,) = events
    assert failed["type"] == "failed" and failed["error_type"] == "ModuleNotFoundError"
    assert "pip install axolotl==0.19.0" in failed["message"] and f"{AXOLOTL_PYTHON_ENV} is not set" in failed["message"]
    assert not (tmp_path / "run" / "output").exists()


def test_the_run_is_handed_to_the_python_that_has_axolotl(tmp_path: Path, stand_in_axolotl_python: Path):
    # That Python sees axolotl (an empty stand-in), so it gets past "not installed" to the spec's own fault.
    code, events = run_trainer(axolotl_spec(tmp_path, method="dpo"), **{AXOLOTL_PYTHON_ENV: str(stand_in_axolotl_python)})
    assert code == 1 and [e["type"] for e in events] == ["failed"]
    assert events[0]["message"] == "spec.method is 'dpo'; an Axolotl run trains SFT"


def test_a_hand_written_spec_is_checked_again(tmp_path: Path, stand_in_axolotl_python: Path):
    bad = {"datasets": [{"path": "/etc/passwd", "type": "completion"}], "plugins": ["evil.Plugin"]}
    code, events = run_trainer(axolotl_spec(tmp_path, axolotl_config=bad), **{AXOLOTL_PYTHON_ENV: str(stand_in_axolotl_python)})
    assert code == 1 and "plugins is refused" in events[0]["message"] and "/etc/passwd" in events[0]["message"]


def test_the_trl_verbs_refuse_an_axolotl_spec(tmp_path: Path):
    spec = axolotl_spec(tmp_path)
    done = subprocess.run([sys.executable, "-m", "trainer", "sft", str(spec)], cwd=ROOT, capture_output=True, timeout=120)
    events = [json.loads(line) for line in (spec.parent / "events.jsonl").read_text().splitlines()]
    assert done.returncode == 1 and "runs ftapp's own recipes (trl)" in events[-1]["message"]
