"""The Compare playground through the real services, the real supervisor and a real inference worker on CPU."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from ftapp.compare.answers import DONE, GENERATING, ComparisonFailed
from ftapp.compare.request import CompareRequest
from ftapp.errors import ConflictError, ValidationError
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.runs.process_identity import is_alive
from trainer.protocol import CLOSED_REQUESTS_DIR, REQUESTS_DIR

FEW_TOKENS = {"max_new_tokens": 64}


@pytest.fixture
def adapters(services, registered, random_adapter):
    """Two adapters on the demo model, registered as a user would; large random weights so they ramble
    (seeded: PEFT draws lora_A from torch's global generator)."""
    import torch

    made = []
    for seed in (21, 22):
        torch.manual_seed(seed)
        location = random_adapter(seed, scale=2.0)
        made.append(services.adapters.add(AddAdapterRequest(name=f"random-{seed}", model_id=registered.model.id, location=str(location))))
    return made


@pytest.fixture
def comparisons(services):
    """The service with a short idle timeout and one CPU thread, and the supervisor watching in the background."""
    service = services.comparisons
    service.inference_workers.idle_timeout_s, service.inference_workers.cpu_threads = 60.0, 1
    services.supervisor.poll_interval_s = 0.2
    services.supervisor.start_background()
    return service


def wait_for(predicate, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def rule_ids(call) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        call()
    return set(caught.value.rule_ids)


def test_bad_requests_name_their_rules_and_start_nothing(services, registered, adapters, tmp_path):
    copy = tmp_path / "other-model"
    shutil.copytree(Path(registered.model.location), copy)
    other = services.models.add(AddModelRequest(type="project", name="other", location=str(copy)))
    good = CompareRequest(model_id=registered.model.id, adapter_ids=(adapters[0].id,), prompt="Where is my order?")
    start = services.comparisons.start

    assert rule_ids(lambda: start(CompareRequest(model_id="nope", prompt="x"))) == {"CP-001"}
    assert rule_ids(lambda: start(CompareRequest(model_id=other.id, adapter_ids=(adapters[0].id,), prompt="x"))) == {"CP-002"}
    assert rule_ids(lambda: start(CompareRequest(model_id=registered.model.id, adapter_ids=(adapters[0].id,) * 2, prompt="x"))) == {
        "CP-002"
    }
    assert rule_ids(lambda: start(CompareRequest(model_id=registered.model.id, adapter_ids=("a", "b", "c", "d", "e"), prompt="x"))) == {
        "CP-002",
        "CP-003",
    }
    assert rule_ids(
        lambda: start(
            CompareRequest(model_id=registered.model.id, adapter_ids=(adapters[0].id,), include_base=False, blind=True, prompt="x")
        )
    ) == {"CP-003"}
    everything_wrong = CompareRequest(
        model_id=registered.model.id, include_base=False, prompt=" ", generation={"temperature": -1, "num_beans": 2}, seed=2**40
    )
    assert rule_ids(lambda: start(everything_wrong)) == {"CP-003", "CP-004", "CP-005", "CP-006"}
    assert rule_ids(lambda: start(CompareRequest(**{**good.__dict__, "generation": {"num_beams": 3}}))) == {"CP-005"}
    assert services.runs.list() == [] and not any(services.settings.runs_dir.iterdir())

    sample = services.comparisons.sample_prompt
    assert rule_ids(lambda: sample("nope", registered.prompt.id, 0)) == {"CP-007"}
    assert rule_ids(lambda: sample(registered.dataset.id, registered.prompt.id, registered.dataset.num_rows)) == {"CP-008"}
    # A row goes through the input template as training saw it: the question part only.
    text = sample(registered.dataset.id, registered.prompt.id, 3)
    assert text.startswith("### Request:\n") and text.endswith("### Intent:\n")


def test_sampled_prompts_lose_the_trailing_spaces_training_moved_into_the_completion(services, registered):
    from ftapp.prompts.service import AddPromptRequest

    spaced = services.prompts.add(
        AddPromptRequest(
            name="spaced",
            dataset_id=registered.dataset.id,
            prompt_template="Request: {request}\nIntent: {intent}",
            input_template="Request: {request}\nIntent: ",
            completion_template="{intent}",
        )
    )
    assert services.comparisons.sample_prompt(registered.dataset.id, spaced.id, 0).endswith("\nIntent:")


@pytest.mark.slow
def test_base_and_two_adapters_stream_side_by_side_then_vote(services, registered, adapters, comparisons):
    prompt = comparisons.sample_prompt(registered.dataset.id, registered.prompt.id, 0)
    request = CompareRequest(
        model_id=registered.model.id,
        adapter_ids=tuple(a.id for a in adapters),
        include_base=True,
        prompt=prompt,
        generation=FEW_TOKENS,
        seed=0,
    )
    started = time.monotonic()
    snapshots = list(comparisons.generate(request))
    print(f"first comparison (worker start-up included): {time.monotonic() - started:.1f} s, {len(snapshots)} snapshots")
    final = snapshots[-1]
    assert final.phase == DONE and final.comparison.labels == ("tiny (base)", "random-21", "random-22")
    base, first, second = final.texts
    assert first != base and second != base and first != second
    assert max(final.new_tokens) <= 64 and final.tokens_per_s > 0
    phases = [s.phase for s in snapshots]
    assert phases[0] in ("queued", "loading") and GENERATING in phases, phases
    longest = final.new_tokens.index(max(final.new_tokens))
    growing = [len(s.texts[longest]) for s in snapshots if s.phase == GENERATING]
    assert growing == sorted(growing) and growing[0] < len(final.texts[longest]), growing
    # The file the snapshots were read from streamed step by step (how many of them a reader sees depends on the load).
    streamed = [json.loads(line) for line in Path(final.comparison.response_path).read_text().splitlines()]
    assert len([line for line in streamed if "step" in line]) >= 3 and streamed[-1]["done"]

    runs = services.runs.list()
    assert [(r.kind, r.status, r.gpus) for r in runs] == [("inference", "running", "cpu")]
    # The answers stream from the worker's own file; its row learns of "started" when the supervisor next reads its
    # events, which on a loaded machine can come after the comparison is done.
    wait_for(lambda: comparisons.worker(registered.model.id).ready)
    worker = comparisons.worker(registered.model.id)
    assert worker.ready and worker.run_id == runs[0].id and worker.idle_timeout_s == 60.0 and worker.devices == "cpu"

    # The worker stays loaded: the next comparison reuses it and answers the same greedy texts, blind this time.
    started = time.monotonic()
    blind = list(comparisons.generate(CompareRequest(**{**request.__dict__, "blind": True})))[-1]
    print(f"second comparison (warm worker): {time.monotonic() - started:.2f} s")
    assert len(services.runs.list()) == 1
    assert blind.comparison.labels == ("A", "B", "C") and blind.comparison.order_seed is not None
    by_name = {c.name: text for c, text in zip(blind.comparison.candidates, blind.texts)}
    assert by_name == {"tiny (base)": base, "random-21": first, "random-22": second}
    wait_for(lambda: comparisons.worker(registered.model.id).served == 2)
    Path(runs[0].run_dir, "events.jsonl").unlink()  # what the worker said is in its row: the view needs no file
    ingested = comparisons.worker(registered.model.id)
    assert ingested.ready and ingested.served == 2 and ingested.device_name and 0 <= time.time() - ingested.last_active < 600

    with pytest.raises(ValidationError, match="CP-009"):
        comparisons.vote(blind, "D")
    vote = comparisons.vote(blind, "B")
    assert vote.reveal == {c.label: c.name for c in blind.comparison.candidates}
    stored = comparisons.votes(registered.model.id)
    assert [v.id for v in stored] == [vote.record.id] and stored[0].blind and stored[0].winner == "B"
    candidates = json.loads(stored[0].candidates)
    assert [c["label"] for c in candidates] == ["A", "B", "C"]  # the order shown
    assert [c["output"] for c in candidates] == list(blind.texts)
    assert {c["adapter_id"] for c in candidates} == {None, adapters[0].id, adapters[1].id}
    assert json.loads(stored[0].settings)["seed"] == 0 and stored[0].prompt == prompt
    with pytest.raises(ConflictError):
        comparisons.vote(blind, "tie")
    assert comparisons.vote(final, "tie").record.winner == "tie"

    # Stop: the run ends cancelled and its process is gone.
    run = services.runs.get(worker.run_id)
    assert [r.id for r in comparisons.stop_worker(registered.model.id)] == [run.id]
    ended = wait_for(lambda: (r := services.runs.get(run.id)).status == "cancelled" and r, timeout_s=30)
    assert not is_alive(run.pid, run.process_start_time) and ended.error_cause == "cancelled"
    assert comparisons.workers() == [] and comparisons.stop_worker(registered.model.id) == []


def test_a_worker_that_fails_or_is_stopped_ends_the_stream_with_its_reason(services, registered, tmp_path, comparisons):
    copy = tmp_path / "vanishing"
    shutil.copytree(Path(registered.model.location), copy)
    model = services.models.add(AddModelRequest(type="project", name="vanishing", location=str(copy)))
    shutil.rmtree(copy)  # the worker refuses its spec before loading anything
    with pytest.raises(ComparisonFailed, match="base model not found"):
        list(comparisons.generate(CompareRequest(model_id=model.id, prompt="hello", generation=FEW_TOKENS)))
    assert services.runs.list()[0].status == "failed"

    services.supervisor.stop_background()  # the next worker stays queued, so the stop catches it before it starts
    comparison = comparisons.start(CompareRequest(model_id=registered.model.id, prompt="hello", generation=FEW_TOKENS))
    comparisons.stop_worker(registered.model.id)
    with pytest.raises(ComparisonFailed, match="stopped before it answered"):
        list(comparisons.follow(comparison))


def test_a_request_goes_to_a_new_worker_once_the_old_one_closed_its_queue(services, registered):
    """A worker that idled out renames its queue; the next request starts a fresh worker instead of waiting forever."""
    request = CompareRequest(model_id=registered.model.id, prompt="hello")
    first = services.comparisons.start(request)
    first_dir = Path(services.runs.get(first.worker_run_id).run_dir)
    assert services.comparisons.start(request).worker_run_id == first.worker_run_id  # one worker per base model
    (first_dir / REQUESTS_DIR).rename(first_dir / CLOSED_REQUESTS_DIR)
    second = services.comparisons.start(request)
    assert second.worker_run_id != first.worker_run_id
    assert [r.status for r in services.runs.list()] == ["queued", "queued"]
    assert (Path(services.runs.get(second.worker_run_id).run_dir) / REQUESTS_DIR / f"{second.request_id}.json").is_file()
