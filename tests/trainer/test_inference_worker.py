"""The inference worker: a real ``python -m trainer infer`` child on the demo model, and its queue rules.

One child serves every request of the first test (start-up is most of its ~15 s); the queue's
idle/close rules are checked in-process with a stand-in model, in milliseconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from trainer.inference.worker import serve, take_oldest
from trainer.protocol import (
    CLOSED_REQUESTS_DIR,
    REQUESTS_DIR,
    RESPONSES_DIR,
    InferenceRequest,
    InferenceSpec,
    InferenceTarget,
    ModelSource,
    read_events,
    write_json_atomically,
    write_spec,
)

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "### Request:\nWhere is my parcel? It has not arrived yet.\n### Intent:\n"
GREEDY = {"max_new_tokens": 40, "do_sample": False}
SAMPLED = {"max_new_tokens": 24, "do_sample": True, "temperature": 1.0, "top_p": 0.95}


@pytest.fixture(scope="module")
def adapters(random_adapter) -> tuple[Path, Path]:
    """Large random weights: answers that differ from the base model's and ramble for a while (EOS
    came after 35 tokens at the earliest in 32 tries); seeded, since PEFT draws lora_A from torch's global RNG."""
    import torch

    made = []
    for seed in (11, 13):
        torch.manual_seed(seed)
        made.append(random_adapter(seed, scale=2.0))
    return made[0], made[1]


def request(
    request_id: str,
    targets: list[tuple[str, Path | None]],
    generation: dict[str, Any],
    seed: int = 0,
    prompt: str | list[dict[str, str]] = PROMPT,
) -> InferenceRequest:
    return InferenceRequest(
        request_id, prompt, tuple(InferenceTarget(label, str(path) if path else None) for label, path in targets), generation, seed
    )


def queue(run_dir: Path, item: InferenceRequest) -> None:
    write_json_atomically(run_dir / REQUESTS_DIR / f"{item.request_id}.json", item.to_dict())
    time.sleep(0.01)  # distinct modification times: the worker serves the oldest first


def response(run_dir: Path, request_id: str) -> list[dict[str, Any]]:
    path = run_dir / RESPONSES_DIR / f"{request_id}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_the_worker_answers_every_target_in_one_stream_and_exits_when_idle(tmp_path, demo_kit, adapters):
    run_dir = tmp_path / "worker"
    (run_dir / REQUESTS_DIR).mkdir(parents=True)
    spec = InferenceSpec(
        run_id="worker", run_dir=str(run_dir), model=ModelSource(str(demo_kit.model_dir)), idle_timeout_s=2.0, cpu_threads=1
    )
    one, two = adapters
    everyone = [("base", None), ("one", one), ("two", two)]
    queue(run_dir, request("r1", everyone, GREEDY))
    queue(run_dir, request("r2", [("two", two), ("base", None)], GREEDY))  # adapters are cached by path
    queue(run_dir, request("r3", [("lost", tmp_path / "no-such-adapter"), ("base", None)], GREEDY))
    queue(run_dir, request("r4", [("one", one), ("one again", one)], SAMPLED, seed=7))
    queue(run_dir, request("r5", [("one", one), ("one again", one)], SAMPLED, seed=7))
    queue(run_dir, request("r6", [("base", None)], GREEDY, prompt=[{"role": "user", "content": "Where is my parcel?"}]))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "infer", str(write_spec(spec))], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    print(f"worker ran {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    lines = response(run_dir, "r1")
    assert lines[0] == {"accepted": True, "labels": ["base", "one", "two"]}
    steps, final = lines[1:-1], lines[-1]
    assert final["done"] is True and len(final["texts"]) == 3 and final["seconds"] > 0 and final["tokens_per_s"] > 0
    # Streamed: the longest answer grows over several lines, step numbers rise, and the stream ends where the answers do.
    longest = final["new_tokens"].index(max(final["new_tokens"]))
    lengths = [len(line["texts"][longest]) for line in steps]
    # Partial lines are rate-limited (LINE_INTERVAL_S): on an idle machine the tiny model's 40 tokens take ~40 ms,
    # so two growing partial lines is what a fast run writes (CI saw exactly that), more on a slow one.
    assert len(steps) >= 2 and lengths == sorted(lengths) and len(set(lengths)) >= 2, lengths
    assert [line["step"] for line in steps] == sorted({line["step"] for line in steps})
    assert steps[-1]["texts"] == final["texts"]
    base, first, second = final["texts"]
    assert first != base and second != base and first != second
    assert all(0 < n <= GREEDY["max_new_tokens"] for n in final["new_tokens"])

    # Greedy answers do not depend on what else shares the batch or on which request loaded the adapter.
    assert response(run_dir, "r2")[-1]["texts"] == [second, base]
    # A request that fails gets its error line; the worker goes on with the next.
    assert response(run_dir, "r3")[-1]["error_type"] == "FileNotFoundError"
    assert "no-such-adapter" in response(run_dir, "r3")[-1]["error"]
    # Sampling is seeded per request: the same seed gives the same answers.
    assert response(run_dir, "r4")[-1]["texts"] == response(run_dir, "r5")[-1]["texts"]
    assert response(run_dir, "r6")[-1]["done"] is True  # chat turns go through the chat template

    events = read_events(run_dir / "events.jsonl").events
    kinds = [e.type for e in events]
    assert kinds == ["started", *["progress"] * 5, "done"], kinds
    assert events[0].data["device"] == "cpu" and events[0].data["idle_timeout_s"] == 2.0
    assert events[-1].data["served"] == 6
    assert events[-1].time - events[-2].time >= 2.0  # it waited out its idle timeout
    assert not (run_dir / REQUESTS_DIR).exists() and (run_dir / CLOSED_REQUESTS_DIR).is_dir()


class CannedSession:
    """A stand-in for the loaded model: answers at once with the prompt echoed per target."""

    facts = {"device": "cpu", "device_name": "cpu", "model": "stand-in"}

    def answer(self, item: InferenceRequest, write) -> dict[str, Any]:
        texts = [f"{t.label}: {item.prompt}" for t in item.targets]
        write({"step": 1, "texts": texts})
        return {"texts": texts, "new_tokens": [1] * len(texts), "seconds": 0.01, "tokens_per_s": 100.0}


class Events:
    def __init__(self):
        self.emitted: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, /, **data: Any) -> None:
        self.emitted.append((kind, data))


def test_requests_are_taken_once_oldest_first(tmp_path):
    folder = tmp_path / REQUESTS_DIR
    folder.mkdir()
    for name in ("b", "a"):
        queue(tmp_path, request(name, [("base", None)], GREEDY))
    (folder / "half.json.partial").write_text("{")  # being written: not a request yet
    assert take_oldest(folder).name == "b.taken"
    assert take_oldest(folder).name == "a.taken"
    assert take_oldest(folder) is None
    assert take_oldest(tmp_path / "absent") is None


def test_an_idle_worker_closes_its_queue_and_still_answers_what_landed_there(tmp_path):
    spec = InferenceSpec(run_id="w", run_dir=str(tmp_path), model=ModelSource("stand-in"), idle_timeout_s=0.3)
    (tmp_path / REQUESTS_DIR).mkdir()  # as ftapp does: the queue exists before the worker starts
    events = Events()
    worker = threading.Thread(target=serve, args=(spec, CannedSession(), events))
    worker.start()
    queue(tmp_path, request("early", [("base", None)], GREEDY))
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert response(tmp_path, "early")[-1]["texts"] == [f"base: {PROMPT}"]
    assert [kind for kind, _ in events.emitted] == ["started", "progress", "done"]
    # The queue is closed: a late writer fails to write instead of waiting for an answer that never comes.
    with pytest.raises(FileNotFoundError):
        queue(tmp_path, request("late", [("base", None)], GREEDY))


def test_a_request_caught_by_the_closing_rename_is_answered(tmp_path, monkeypatch):
    """A request written just before the rename ends up in requests.closed/ and is served before exiting."""
    spec = InferenceSpec(run_id="w", run_dir=str(tmp_path), model=ModelSource("stand-in"), idle_timeout_s=0.05)
    late = request("race", [("base", None)], GREEDY)

    def racing_take(folder: Path) -> Path | None:
        # The worker's last look: a writer's request landed in the folder just as it was renamed.
        if folder.name == CLOSED_REQUESTS_DIR and not (folder / "race.taken").exists():
            write_json_atomically(folder / "race.json", late.to_dict())
        return take_oldest(folder)

    monkeypatch.setattr("trainer.inference.worker.take_oldest", racing_take)
    events = Events()
    assert serve(spec, CannedSession(), events) == 1
    assert response(tmp_path, "race")[-1]["done"] is True
    assert events.emitted[-1] == ("done", {"served": 1})
