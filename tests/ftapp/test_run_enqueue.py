"""The one function that creates every run (``ftapp.runs.enqueue``), against a real SQLite home: all of a run or none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftapp.ids import new_id
from ftapp.run_vocabulary import RunKind
from ftapp.runs import enqueue as enqueue_module
from ftapp.runs.enqueue import enqueue
from ftapp.runs.fine_tune_request import FineTuneRequest
from storage import MissingReferenceError
from trainer.protocol import InferenceSpec, ModelSource, write_spec


def worker_spec(services, registered, run_id: str | None = None) -> InferenceSpec:
    run_id = run_id or new_id()
    return InferenceSpec(
        run_id=run_id,
        run_dir=str(services.settings.runs_dir / run_id),
        model=ModelSource(registered.model.source, registered.model.architecture),
    )


def nothing_left(services, run_id: str) -> bool:
    return services.runs.list() == [] and not (services.settings.runs_dir / run_id).exists()


def test_a_run_is_its_folder_its_spec_written_once_and_its_row_and_the_supervisor_is_woken(services, registered, monkeypatch):
    woken = []
    monkeypatch.setattr(services.supervisor, "wake", lambda: woken.append(True))
    spec = worker_spec(services, registered)
    run = enqueue(
        services.db,
        services.supervisor,
        spec,
        kind=RunKind.INFERENCE,
        name="worker",
        prepare=lambda folder: (folder / "requests").mkdir(),
        base_model_id=registered.model.id,
    )
    folder = services.settings.runs_dir / spec.run_id
    assert (run.id, run.kind, run.status, run.run_dir, run.log_path) == (
        spec.run_id,
        "inference",
        "queued",
        str(folder),
        str(folder / "trainer.log"),
    )
    assert json.loads((folder / "spec.json").read_text()) == json.loads(run.spec) == spec.to_dict()
    assert (folder / "requests").is_dir() and woken == [True]
    assert services.runs.get(run.id) == run


def test_a_refused_row_leaves_no_folder_and_no_row(services, registered, monkeypatch):
    woken = []
    monkeypatch.setattr(services.supervisor, "wake", lambda: woken.append(True))
    spec = worker_spec(services, registered)
    with pytest.raises(MissingReferenceError):  # the database refuses a base model that does not exist
        enqueue(services.db, services.supervisor, spec, kind=RunKind.INFERENCE, name="worker", base_model_id=new_id())
    assert nothing_left(services, spec.run_id) and woken == []


def test_rows_added_with_the_run_fail_with_it_and_take_the_run_along(services, registered):
    spec = worker_spec(services, registered)

    def add_a_clashing_combination(tx, run) -> None:
        tx.evaluation_combinations.add(run_id=run.id, position=1, label="a", model_id=registered.model.id)
        tx.evaluation_combinations.add(run_id=run.id, position=1, label="b", model_id=registered.model.id)  # a duplicate

    with pytest.raises(Exception, match="evaluation_combinations"):
        enqueue(services.db, services.supervisor, spec, kind=RunKind.EVALUATION, name="eval", also=add_a_clashing_combination)
    assert nothing_left(services, spec.run_id)
    with services.db.transaction() as tx:
        assert tx.evaluation_combinations.list() == []


def test_a_spec_that_cannot_be_written_leaves_nothing(services, registered, monkeypatch):
    def full_disk(spec, path=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(enqueue_module, "write_spec", full_disk)
    spec = worker_spec(services, registered)
    with pytest.raises(OSError, match="No space left"):
        enqueue(services.db, services.supervisor, spec, kind=RunKind.INFERENCE, name="worker", base_model_id=registered.model.id)
    assert nothing_left(services, spec.run_id)


def test_an_output_dir_run_whose_home_copy_fails_leaves_neither_folder(services, registered, tmp_path, monkeypatch):
    """FT-003: the run's files go to its output_dir, the spec the supervisor launches into the home; a failure
    between the two writes removes both folders (submit through the real RunService)."""
    writes = []

    def second_write_fails(spec, path=None):
        writes.append(path)
        if len(writes) == 2:
            raise OSError(5, "Input/output error")
        return write_spec(spec, path)

    monkeypatch.setattr(enqueue_module, "write_spec", second_write_fails)
    out = tmp_path / "elsewhere"
    out.mkdir()
    request = FineTuneRequest(
        base_model_id=registered.model.id,
        dataset_id=registered.dataset.id,
        prompt_id=registered.prompt.id,
        adapter_name="out-dir",
        gpus="cpu",
        output_dir=str(out),
        overrides={"max_steps": 1},
    )
    with pytest.raises(OSError, match="Input/output"):
        services.runs.submit(request)
    assert writes[0] is None and Path(writes[1]).parent.parent == services.settings.runs_dir
    assert list(out.iterdir()) == [] and list(services.settings.runs_dir.iterdir()) == [] and services.runs.list() == []


def test_an_existing_folder_is_never_taken_over_nor_removed(services, registered):
    spec = worker_spec(services, registered)
    folder = Path(spec.run_dir)
    folder.mkdir(parents=True)
    (folder / "someone-elses.txt").write_text("kept")
    with pytest.raises(FileExistsError):
        enqueue(services.db, services.supervisor, spec, kind=RunKind.INFERENCE, name="worker", base_model_id=registered.model.id)
    assert (folder / "someone-elses.txt").read_text() == "kept" and services.runs.list() == []
