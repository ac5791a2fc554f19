"""MLflow tracking of an evaluation: its settings as params, ``c<position>.<metric>`` (and deltas) as metrics.

Per-row answers travel as the run's ``output/results.jsonl`` artifact, next to ``aggregates.json``.
"""

from __future__ import annotations

from mlflow.entities import Param

from trainer.protocol import EvaluationSpec, reward_names
from trainer.run_tracking import MAX_PARAM_CHARS, PARAMS_PER_BATCH, RunTracking, experiment_id, tracking_client


def start_evaluation_tracking(spec: EvaluationSpec) -> RunTracking:
    assert spec.mlflow_tracking_uri, "callers skip tracking when the spec has no tracking URI"
    client = tracking_client(spec.mlflow_tracking_uri)
    experiment = experiment_id(client, spec.mlflow_experiment, spec.mlflow_tracking_uri)
    run = client.create_run(experiment, run_name=f"evaluation {spec.run_id[:8]}", tags={"ftapp.run_id": spec.run_id})
    params = {
        "run_id": spec.run_id,
        "rows_from": spec.rows_from,
        "num_rows": len(spec.row_indices),
        "data.path": spec.data.path if spec.data else None,
        "data.hub_name": spec.data.hub_name if spec.data else None,
        "batch_size": spec.batch_size,
        "seed": spec.seed,
        "device": spec.device,
        "rewards": ", ".join(reward_names(spec.rewards)) or None,
    }
    params.update({f"generation.{k}": v for k, v in spec.generation.items()})
    if spec.benchmark:
        params.update(
            {
                "benchmark.tasks": ", ".join(spec.benchmark.tasks) or "(every task of the folder)",
                "benchmark.task_dir": spec.benchmark.task_dir,
                "benchmark.limit": spec.benchmark.limit,
                "benchmark.num_fewshot": spec.benchmark.num_fewshot,
            }
        )
    if spec.judge:
        params.update({"judge": spec.judge.label or spec.judge.model or spec.judge.url, "judge.rubric": spec.judge.rubric})
    for combo in spec.combinations:
        params[f"c{combo.position}.label"] = combo.label
        params[f"c{combo.position}.model"] = combo.model.source
        params[f"c{combo.position}.adapter"] = combo.adapter_path
    items = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items() if v is not None]
    for start in range(0, len(items), PARAMS_PER_BATCH):
        client.log_batch(run.info.run_id, params=items[start : start + PARAMS_PER_BATCH])
    return RunTracking(client, run.info.run_id)
