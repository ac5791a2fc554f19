"""The preflight's time counts the trainer process's start-up and finish and a model's measured step pace, taken
from this home's own finished runs (issue 16: it said 15 s for a 76 s CPU run whose imports alone took 15 s)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from ftapp.runs import FineTuneRequest
from ftapp.runs.run_timing import FIRST_RUN, StepKind, measured_timing
from ftapp.services import Services
from tests.ftapp.test_rule_catalogue import CPU
from ui.train_form import preflight_markdown

LAUNCH = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def finished_run(
    services: Services, model_id: str | None, startup: float, step_s: float, finish: float, steps: int = 10, **row: object
) -> str:
    """A succeeded training run as the supervisor leaves it: launched, a loss per step, finished."""
    run_id = str(uuid.uuid4())
    first_step_at = LAUNCH.timestamp() + startup + step_s  # step 1 ends one step after the start-up
    last_time = first_step_at + (steps - 1) * step_s
    values = dict(
        id=run_id,
        kind="finetune",
        name=run_id[:8],
        status="succeeded",
        spec=json.dumps({"method": "sft", "training_mode": "lora"}),
        gpus="cpu",
        base_model_id=model_id,
        started_at=LAUNCH,
        finished_at=datetime.fromtimestamp(last_time + finish, UTC),
    )
    values.update(row)
    with services.db.transaction() as tx:
        tx.runs.add(**values)
        points = [
            {"run_id": run_id, "step": s, "name": "loss", "value": 1.0, "time": first_step_at + (s - 1) * step_s}
            for s in range(1, steps + 1)
        ]
        tx.metric_points.add_many(points)
    return run_id


def test_a_fresh_home_uses_the_figures_measured_once(services: Services) -> None:
    with services.db.transaction() as tx:
        assert measured_timing(tx, "cpu", StepKind("any-model", "sft", "lora")) == FIRST_RUN["cpu"]
        assert measured_timing(tx, "cuda") == FIRST_RUN["cuda"]


def test_start_up_and_finish_are_medians_of_the_last_runs_and_the_pace_is_the_models_own(services: Services, registered) -> None:
    for startup, finish in ((10.0, 4.0), (12.0, 6.0), (30.0, 5.0)):
        finished_run(services, registered.model_id, startup, step_s=1.5, finish=finish)
    finished_run(services, None, 11.0, step_s=9.0, finish=5.0)  # another model: neither its start-up nor its pace counts
    finished_run(services, registered.model_id, 99.0, step_s=0.1, finish=99.0, parent_run_id=None, gpus="0")  # a GPU run
    resumed = finished_run(services, registered.model_id, 1.0, step_s=1.0, finish=1.0)
    with services.db.transaction() as tx:
        tx.runs.update(resumed, parent_run_id=tx.runs.list()[0].id)  # resumed from a checkpoint: no start-up to learn from

    with services.db.transaction() as tx:
        timing = measured_timing(tx, "cpu", StepKind(registered.model_id, "sft", "lora"))
        unknown = measured_timing(tx, "cpu", StepKind("a model never run here", "sft", "lora"))

    assert (round(timing.startup_s, 3), round(timing.finish_s, 3), timing.runs) == (12.0, 5.0, 3)
    assert (round(timing.step_s, 3), timing.step_runs) == (1.5, 3)
    # No run of that model: every SFT run's start-up and finish, the other model's too; no pace.
    assert (round(unknown.startup_s, 3), round(unknown.finish_s, 3), unknown.runs, unknown.step_s) == (11.5, 5.0, 4, None)


def forty_steps(registered, **changes: object) -> FineTuneRequest:
    values: dict = dict(
        base_model_id=registered.model_id,
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        adapter_name="timed",
        gpus="cpu",
        overrides={"max_steps": 40},
    )
    return FineTuneRequest(**{**values, **changes})


def test_the_preflight_counts_them_and_says_where_they_come_from(services: Services, registered) -> None:
    request = forty_steps(registered)
    _, fresh = services.runs.check(request, CPU)
    assert fresh.seconds == FIRST_RUN["cpu"].startup_s + fresh.compute_seconds + FIRST_RUN["cpu"].finish_s  # no pace known yet
    assert "no finished run on the CPU here yet" in preflight_markdown(fresh, [])

    finished_run(services, registered.model_id, 12.7, step_s=1.19, finish=6.4)  # the demo model's run of the issue
    _, measured = services.runs.check(request, CPU)

    assert abs(measured.seconds - (12.7 + 40 * 1.19 + 6.4)) < 1  # the 67 s that run took, not its FLOPs' 20 s
    text = preflight_markdown(measured, [])
    assert "| Start-up | ≈ 13 s: Python, the torch/transformers imports, model and data loading |" in text
    assert "| Steps | ≈ 48 s: 40 steps at 1.19 s each, this model's pace in its last lora SFT run here |" in text
    assert "| Finishing | ≈ 6 s" in text and "this model's last finished lora SFT run on the CPU" in text
    assert "start-up (~13 s) and finish (~6 s)" in measured.summary()  # what the command line prints


def test_rows_that_do_not_fit_together_measure_nothing(services: Services, registered) -> None:
    finished_run(services, registered.model_id, -50.0, step_s=1.0, finish=3.0)  # a loss before the launch (an import)
    finished_run(services, registered.model_id, 5.0, step_s=1.0, finish=3.0, steps=1)  # one loss: no pace
    finished_run(services, registered.model_id, 5.0, step_s=1.0, finish=3.0, finished_at=LAUNCH - timedelta(seconds=1))

    with services.db.transaction() as tx:
        assert measured_timing(tx, "cpu", StepKind(registered.model_id, "sft", "lora")) == FIRST_RUN["cpu"]


def test_the_pace_is_that_of_the_same_kind_of_step(services: Services, registered) -> None:
    """On one model a GRPO step that samples with TRL's generate took 2.8 s and one with the graphed sampler 0.19 s
    (bench/preference_gpu.py on an H200, one after the other in one home): the graphed run's preflight took the first
    run's pace and said 2.1 min for a 42 s run. An SFT step's pace says nothing about a DPO step's either."""
    model = registered.model_id

    def grpo(step_s: float, engine: object, **row: object) -> str:
        spec = json.dumps({"method": "grpo", "training_mode": "lora"})
        return finished_run(
            services, model, 20.0, step_s=step_s, finish=5.0, spec=spec, started_payload=json.dumps({"generation_engine": engine}), **row
        )

    grpo(2.8, "generate")
    grpo(0.19, "graphed")
    grpo(9.0, ["graphed"])  # an imported row's payload is untrusted: not a name, not the engine
    finished_run(services, model, 20.0, step_s=0.05, finish=5.0)  # SFT
    finished_run(services, model, 20.0, step_s=7.0, finish=5.0, spec="not json")  # unreadable: no kind
    finished_run(services, model, 20.0, step_s=3.0, finish=5.0, spec=json.dumps({"method": "sft", "training_mode": "qlora"}))

    def pace(method: str, mode: str = "lora", engine: str | None = None) -> tuple[float | None, int]:
        with services.db.transaction() as tx:
            timing = measured_timing(tx, "cpu", StepKind(model, method, mode, engine))
        return (round(timing.step_s, 3) if timing.step_s is not None else None, timing.step_runs)

    assert pace("grpo", engine="graphed") == (0.19, 1)
    assert pace("grpo", engine="generate") == (2.8, 1)
    assert pace("sft") == (0.05, 1)
    assert pace("sft", "qlora") == (3.0, 1)
    assert pace("dpo") == (None, 0)
    with services.db.transaction() as tx:
        timing = measured_timing(tx, "cpu", StepKind(model, "grpo", "lora", "graphed"))
    assert timing.pace_source() == "this model's pace in its last lora GRPO (sampling with graphed) run here"


def test_the_preflight_paces_a_request_by_the_runs_of_its_own_kind(services: Services, registered, monkeypatch) -> None:
    request = forty_steps(registered)
    finished_run(services, registered.model_id, 12.7, step_s=1.19, finish=6.4)
    finished_run(services, registered.model_id, 12.7, step_s=30.0, finish=6.4, spec=json.dumps({"method": "dpo", "training_mode": "lora"}))

    _, preflight = services.runs.check(request, CPU)

    assert preflight is not None and abs(preflight.seconds - (12.7 + 40 * 1.19 + 6.4)) < 1  # the SFT pace, not DPO's 30 s

    grpo_spec = json.dumps({"method": "grpo", "training_mode": "lora"})
    for step_s, engine in ((2.8, "generate"), (0.19, "graphed")):
        payload = json.dumps({"generation_engine": engine})
        finished_run(services, registered.model_id, 20.0, step_s=step_s, finish=5.0, spec=grpo_spec, started_payload=payload)
    grpo = forty_steps(registered, method="grpo", rewards=({"kind": "exact_match"},))
    _, generate = services.runs.check(grpo, CPU)  # on a CPU GRPO samples with TRL's generate unless told otherwise
    monkeypatch.setenv("FTAPP_GRPO_GENERATION", "graphed")
    _, graphed = services.runs.check(grpo, CPU)

    assert generate is not None and graphed is not None
    assert (round(generate.timing.step_s or 0, 3), round(graphed.timing.step_s or 0, 3)) == (2.8, 0.19)
    steps = "40 steps at 0.19 s each, this model's pace in its last lora GRPO (sampling with graphed) run here"
    assert steps in preflight_markdown(graphed, [])


def test_start_up_and_finish_come_from_runs_of_the_same_method_which_had_its_set_up(services: Services, registered) -> None:
    """A GRPO run builds TRL's trainer and its reference before the first step and samples an evaluation at the end:
    an SFT run's start-up says too little, a GRPO run's says it all (the preflight then adds no set-up of its own)."""
    finished_run(services, registered.model_id, 5.0, step_s=0.05, finish=1.0)  # SFT
    grpo_spec = json.dumps({"method": "grpo", "training_mode": "lora"})
    finished_run(services, registered.model_id, 20.0, step_s=0.4, finish=9.0, spec=grpo_spec)
    with services.db.transaction() as tx:
        grpo = measured_timing(tx, "cpu", StepKind(registered.model_id, "grpo", "lora", "graphed"))
        dpo = measured_timing(tx, "cpu", StepKind(registered.model_id, "dpo", "lora"))
    assert (round(grpo.startup_s, 3), round(grpo.finish_s, 3), grpo.runs, grpo.method) == (20.0, 9.0, 1, "grpo")
    assert grpo.source("cpu") == "this home's last finished GRPO run on the CPU"
    assert (round(dpo.startup_s, 3), round(dpo.finish_s, 3), dpo.runs, dpo.method) == (12.5, 5.0, 2, None)  # no DPO run: every run's median


def test_start_up_and_finish_come_first_from_runs_of_the_same_kind_of_step(services: Services, registered) -> None:
    """A GRPO run sampling with TRL's generate ended 22 s after its last step (its final evaluation samples slowly), a
    graphed one 4 s after (bench/preference_gpu.py, H200): a graphed run's finish is the graphed runs'."""
    model = registered.model_id
    grpo_spec = json.dumps({"method": "grpo", "training_mode": "lora"})
    for startup, finish, engine in ((30.0, 22.0, "generate"), (26.0, 4.0, "graphed"), (28.0, 6.0, "graphed")):
        payload = json.dumps({"generation_engine": engine})
        finished_run(services, model, startup, step_s=0.3, finish=finish, spec=grpo_spec, started_payload=payload)
    with services.db.transaction() as tx:
        graphed = measured_timing(tx, "cpu", StepKind(model, "grpo", "lora", "graphed"))
        generate = measured_timing(tx, "cpu", StepKind(model, "grpo", "lora", "generate"))
        paged = measured_timing(tx, "cpu", StepKind(model, "grpo", "lora", "paged"))  # never run: every GRPO run's
    assert (round(graphed.startup_s, 3), round(graphed.finish_s, 3), graphed.runs, graphed.method) == (27.0, 5.0, 2, "grpo")
    assert graphed.source("cpu") == "the median of this model's last 2 finished lora GRPO (sampling with graphed) runs on the CPU"
    assert (round(generate.finish_s, 3), generate.runs) == (22.0, 1)
    assert generate.source("cpu") == "this model's last finished lora GRPO (sampling with generate) run on the CPU"
    assert (round(paged.startup_s, 3), round(paged.finish_s, 3), paged.runs, paged.ends_kind) == (28.0, 6.0, 3, None)
    assert paged.source("cpu") == "the median of this home's last 3 finished GRPO runs on the CPU"
