"""GPU check of DPO and GRPO: a random-initialised Llama-3.2-1B-shaped model trained with LoRA through ftapp's
own services and supervisor (spec.json -> `python -m trainer dpo|grpo` -> events -> SQLite). DPO learns
synthetic preference pairs (a support request: the right intent chosen, a wrong one rejected); GRPO
samples answers to small sums, scored by exact match and a length penalty. Prints one JSON summary:
steps, seconds, pairs/s, generations/s, peak GPU memory and the final metrics of each run, and the preflight's
estimate of the time next to the measured one. GRPO runs once per sampling engine of ``--grpo-engines`` (``+compile``
after one: with the run's ``torch_compile`` setting on) (issue 19:
``generate`` is TRL's plain generate, the baseline; ``graphed`` the CUDA-graph sampler), same data, seed and rewards.

    FTAPP_MLFLOW=0 python bench/preference_gpu.py --steps 30 --grpo-engines generate,graphed
    python bench/preference_gpu.py --smoke      # CPU, the demo model, well under 2 minutes

Needs a CUDA GPU unless --smoke; on a host without mlflow set FTAPP_MLFLOW=0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from supervised_gpu_run import build_model

GIB = 1024**3
DPO_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
GRPO_METRICS = ("reward", "reward_std", "rewards/exact_match/mean", "rewards/length_penalty/mean", "kl", "completions/mean_length")


def preference_rows(kit_dataset: Path, count: int, seed: int = 0) -> list[dict]:
    """The demo requests as pairs: the labelled intent chosen, another intent rejected."""
    rows = [json.loads(line) for line in kit_dataset.read_text().splitlines() if line.strip()]
    intents = sorted({row["intent"] for row in rows})
    rng = random.Random(seed)
    pairs = []
    for row in rng.sample(rows, min(count, len(rows))):
        wrong = rng.choice([intent for intent in intents if intent != row["intent"]])
        pairs.append({"prompt": f"### Request:\n{row['request']}\n### Intent:\n", "chosen": row["intent"], "rejected": wrong})
    return pairs


def sum_rows(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"question": f"What is {a} plus {b}?", "answer": str(a + b)}
        for a, b in ((rng.randrange(1, 50), rng.randrange(1, 50)) for _ in range(count))
    ]


class GpuMemory:
    """Peak used memory of one GPU (nvidia-smi, sampled twice a second) above what was used before the run."""

    def __init__(self, gpu: str):
        self.gpu, self.peak, self._stop = gpu, 0, threading.Event()
        self.baseline = self._used()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _used(self) -> int:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", self.gpu],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return int(output.strip().splitlines()[0]) * 1024**2

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, self._used())

    def __enter__(self) -> GpuMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_gib(self) -> float:
        return round(max(0, self.peak - self.baseline) / GIB, 2)


def run(services, request, gpu: str | None, engine: str | None = None) -> dict:
    from trainer.protocol import GENERATION_ENV

    if engine:  # the trainer process inherits it: each run is a fresh process (FTAPP_WARM_TRAINER=0)
        os.environ[GENERATION_ENV] = engine
    started = time.monotonic()
    if gpu is None:
        run_record, preflight = services.runs.submit(request)
        final = services.runs.wait(run_record.id, timeout_s=1500)
        peak = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / GIB, 2)}
    else:
        with GpuMemory(gpu) as memory:
            run_record, preflight = services.runs.submit(request)
            final = services.runs.wait(run_record.id, timeout_s=1500)
        peak = {"peak_gpu_memory_gib": memory.peak_gib()}
    series = services.runs.metrics(run_record.id)
    loss = series.get("loss", [])
    rate_name = "pairs_per_s" if request.method == "dpo" else "generations_per_s"
    rates = [value for _, value in series.get(rate_name, [])[1:]]  # the first interval includes warm-up
    watched = DPO_METRICS if request.method == "dpo" else GRPO_METRICS
    return {
        "method": request.method,
        "status": final.status,
        "error": (final.error_text or "")[-1500:],
        "steps": loss[-1][0] if loss else 0,
        "seconds": round(time.monotonic() - started, 1),
        rate_name: round(sum(rates) / len(rates), 2) if rates else None,
        **peak,
        "first_loss": loss[0][1] if loss else None,
        "last_loss": loss[-1][1] if loss else None,
        "first": {name: series[name][0][1] for name in watched if series.get(name)},
        "final": {name: series[name][-1][1] for name in watched if series.get(name)},
        "preflight": preflight.summary(),
        "preflight_seconds": round(preflight.seconds, 1),
        **(
            {
                "engine": engine,
                "mean_reward": round(sum(v for _, v in series["reward"]) / len(series["reward"]), 4),
                "generation_s_per_step": _mean([v for _, v in series.get("generation_s", [])[1:]]),
            }
            if engine and series.get("reward")
            else {}
        ),
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--gpu", default="0", help="the GPU id both runs use")
    parser.add_argument("--smoke", action="store_true", help="CPU and the demo model: checks the path, not the speed")
    parser.add_argument("--grpo-engines", default="auto", help="comma-separated FTAPP_GRPO_GENERATION values, one GRPO run each")
    parser.add_argument("--skip-dpo", action="store_true")
    args = parser.parse_args()
    os.environ["FTAPP_WARM_TRAINER"] = "0"  # a fresh trainer per run: it reads the engine from its environment
    from ftapp.datasets.service import AddDatasetRequest
    from ftapp.models.service import AddModelRequest
    from ftapp.prompts.service import AddPromptRequest
    from ftapp.runs.fine_tune_request import FineTuneRequest
    from ftapp.services import open_services
    from ftapp.settings import Settings
    from trainer.demo.model import build_demo_kit

    work = Path(tempfile.mkdtemp(prefix="ftapp-preference-"))
    kit = build_demo_kit(work / "kit", pretrain_steps=0)
    model_dir = kit.model_dir if args.smoke else build_model(work / "kit", work / "llama-3.2-1b-shape")
    steps = 4 if args.smoke else args.steps
    gpu = None if args.smoke else args.gpu
    (work / "pairs.json").write_text(json.dumps(preference_rows(kit.dataset_path, 64 if args.smoke else 2000)))
    (work / "sums.jsonl").write_text("".join(json.dumps(row) + "\n" for row in sum_rows(64 if args.smoke else 2000)))

    services = open_services(Settings.from_env(work / "home"))
    model = services.models.add(AddModelRequest(type="project", name="policy", location=str(model_dir)))
    pairs = services.datasets.add(AddDatasetRequest(name="intent-pairs", location=str(work / "pairs.json")))
    sums = services.datasets.add(AddDatasetRequest(name="sums", location=str(work / "sums.jsonl")))
    prompt = services.prompts.add(
        AddPromptRequest(
            name="sum",
            dataset_id=sums.id,
            prompt_template="Q: {question}\nA: {answer}",
            input_template="Q: {question}\nA: ",
            completion_template="{answer}",
        )
    )
    presets = {p.name: p for p in services.configs.presets()}["modern default"].configs
    common = {
        "base_model_id": model.id,
        "training_mode": "lora",
        "gpus": "cpu" if args.smoke else args.gpu,
        "cpu_threads": 2 if args.smoke else None,
        "train_test_split": 0.95 if args.smoke else 0.99,
        "training_arguments_config_id": presets["training_arguments"].id,
        "lora_config_id": presets["lora_config"].id,
    }
    logging = {"max_steps": steps, "logging_steps": 1 if args.smoke else 5, "eval_steps": steps, "save_steps": steps}
    dpo = FineTuneRequest(
        **common,
        dataset_id=pairs.id,
        adapter_name="bench-dpo",
        method="dpo",
        overrides={**logging, "per_device_train_batch_size": 8 if args.smoke else 32, "max_length": 128, "learning_rate": 5e-5},
        method_settings={"beta": 0.1, "loss_type": "sigmoid"},
    )
    grpo = FineTuneRequest(
        **common,
        dataset_id=sums.id,
        prompt_id=prompt.id,
        adapter_name="bench-grpo",
        method="grpo",
        overrides={
            **logging,
            "per_device_train_batch_size": 8 if args.smoke else 64,
            "per_device_eval_batch_size": 16 if args.smoke else 64,
            "learning_rate": 1e-5,
        },
        method_settings={
            "num_generations": 4 if args.smoke else 8,
            "max_completion_length": 8 if args.smoke else 64,
            "temperature": 1.0,
            "beta": 0.04,
        },
        rewards=({"kind": "exact_match", "weight": 1.0}, {"kind": "length_penalty", "weight": 0.2, "target_length": 8}),
    )
    results = [] if args.skip_dpo else [run(services, dpo, gpu)]
    for index, choice in enumerate(args.grpo_engines.split(",")):
        # "graphed+compile": that engine with the run's torch_compile setting on (each decoder layer compiled).
        engine, _, compiled = choice.partition("+")
        overrides = {**grpo.overrides, "torch_compile": True} if compiled == "compile" else grpo.overrides
        named = dataclasses.replace(grpo, adapter_name=f"bench-grpo-{index}", overrides=overrides)
        results.append({**run(services, named, gpu, engine), "engine": choice})
        print(json.dumps(results[-1], default=str), flush=True)
    base = next((r for r in results if r.get("engine") == "generate" and r.get("generations_per_s")), None)
    for result in results:
        if base and result.get("generations_per_s"):
            result["generations_per_s_vs_generate"] = round(result["generations_per_s"] / base["generations_per_s"], 2)
    services.close()
    print(json.dumps({"smoke": args.smoke, "model_parameters": model.num_parameters, "results": results}, default=str))
    shutil.rmtree(work, ignore_errors=True)
    os._exit(0)


if __name__ == "__main__":
    main()
