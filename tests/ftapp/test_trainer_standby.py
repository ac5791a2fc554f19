"""The warm trainer process (ftapp.runs.standby + trainer.standby) through the real supervisor on CPU."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.runs.process_identity import is_alive
from trainer.protocol import read_events

pytestmark = pytest.mark.slow  # starts real trainer processes

FAST = {
    "max_steps": 3,
    "logging_steps": 1,
    "eval_steps": 3,
    "save_steps": 3,
    "per_device_train_batch_size": 4,
    "max_length": 64,
    "learning_rate": 3e-3,
}


def wait_until(predicate, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_a_run_handed_to_the_warm_trainer_skips_the_imports_and_keeps_the_run_contract(services, registered, monkeypatch):
    monkeypatch.setenv("FTAPP_WARM_TRAINER", "1")
    supervisor = services.supervisor
    supervisor.start_background()
    standby_log = services.settings.home / "standby.log"
    wait_until(lambda: standby_log.is_file() and "standby: ready" in standby_log.read_text(), 120)
    warm = supervisor.standby._process
    assert warm is not None and supervisor.standby.devices == ""  # CPU: no GPU visible

    run, _ = services.runs.submit(
        FineTuneRequest(
            base_model_id=registered.model.id,
            dataset_id=registered.dataset.id,
            prompt_id=registered.prompt.id,
            adapter_name="warm-start",
            gpus="cpu",
            overrides=FAST,
        )
    )
    final = wait_until(lambda: (r := services.runs.get(run.id)).status in ("succeeded", "failed", "cancelled") and r, 240)

    assert final.status == "succeeded", final.error_text
    assert final.pid == warm.pid and final.exit_code == 0  # the warm process became the run
    log = Path(final.log_path).read_text()
    imports = float(re.search(r"setup: imports took ([0-9.]+)s", log).group(1))
    ready = float(re.search(r"standby: ready after ([0-9.]+)s", standby_log.read_text()).group(1))
    assert imports < 1.0 < ready, (imports, ready)  # the run waited for none of the imports the standby did
    kinds = [e.type for e in read_events(Path(final.run_dir) / "events.jsonl").events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert log.count("JOB_DONE") == 1 and "standby: ready" not in log
    assert any(a.name == "warm-start" for a in services.adapters.list())

    # The next run finds a new warm process; closing the app ends it (it is no run).
    replacement = wait_until(lambda: supervisor.standby._process, 30)
    assert replacement.pid != warm.pid
    services.supervisor.stop_background()
    assert not is_alive(replacement.pid, None) or replacement.poll() is not None
