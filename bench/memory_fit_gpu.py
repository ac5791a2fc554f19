"""Does the memory plan hold on smaller GPUs? (issue 19) One H200 plays a 24, 48 or 80 GiB card.

Per model shape (random weights in the real shape, ``train_throughput_runs``) and free-memory budget: a background
process holds all of the GPU's free memory but ``BUDGET`` GiB (what a user's card leaves after the desktop), then
ftapp's ``modern default`` recipe (8 packed rows of up to 2,048 tokens, LoRA r16 on all linear layers) is submitted
through the services as a user would: the preflight plans with the free memory nvidia-smi shows, the trainer plans
again with what it measures at its start. Printed per run: the recipe the trainer chose (rows x accumulation,
checkpointing), its planned peak, the measured peak (used memory above the level before the launch, polled: what
the process reserved), tokens/s after warm-up, and what the preflight said. ``full`` is the whole GPU; ``q24`` QLoRA
at 24 GiB; ``24c`` 24 GiB with gradient checkpointing forced on (the recipe before issue 19, for comparison).

    FTAPP_MLFLOW=0 python bench/memory_fit_gpu.py --plan "llama-1b:24,48,80,full;llama-8b:24,48,80,full,q24"
    python bench/memory_fit_gpu.py --smoke      # CPU: the code paths, no numbers
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from train_throughput import open_ftapp, run_ftapp
from train_throughput_runs import Measured, build_model, build_tokenizer, flops_per_token, write_dataset

GIB = 2**30
HOG = """
import sys, time, torch
keep = int(float(sys.argv[1]) * 2**30)
free, _ = torch.cuda.mem_get_info()
held = torch.empty(max(0, free - keep), dtype=torch.uint8, device="cuda")
print("held", held.numel(), flush=True)
time.sleep(3600)
"""


class MemoryHog:
    """A process holding all the GPU's free memory but ``keep_gib``: the card a user has."""

    def __init__(self, keep_gib: float):
        torch.cuda.empty_cache()  # what this process cached would count as used
        self.process = subprocess.Popen([sys.executable, "-c", HOG, str(keep_gib)], stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("held"):
            raise RuntimeError(f"the memory hog did not start: {line!r}")
        self.free_gib = round(torch.cuda.mem_get_info(0)[0] / GIB, 2)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plan", default="llama-1b:24,48,80,full;llama-8b:24,48,80,full,q24")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--deadline-s", type=float, default=480, help="start no run after this many seconds")
    parser.add_argument("--out", default=os.environ.get("OUT") or ".")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    began = time.monotonic()
    device = "cpu" if args.smoke else "cuda"
    plan = (
        [("tiny", ["full"])]
        if args.smoke
        else [(name, budgets.split(",")) for name, budgets in (part.split(":") for part in args.plan.split(";"))]
    )
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and shutil.disk_usage(shm).free > 48 * GIB else None
    work = Path(tempfile.mkdtemp(prefix="ftapp-fit-", dir=base))
    tokenizer = build_tokenizer(work / "tokenizer")
    rows = write_dataset(work / "data.jsonl", 60 if args.smoke else 1500)
    services, ids = open_ftapp(work, work / "data.jsonl")
    from ftapp.models.service import AddModelRequest

    results: list[dict] = []
    for name, budgets in plan:
        model_dir = work / name
        info = build_model(name, tokenizer, model_dir, device)
        flops = flops_per_token(info, rows)
        model_id = services.models.add(AddModelRequest(type="project", name=name, location=str(model_dir))).id
        for budget in budgets:
            if time.monotonic() - began > args.deadline_s:
                results.append({"model": name, "budget": budget, "error": "not run: past --deadline-s"})
                continue
            mode = "qlora" if budget.startswith("q") else "lora"
            forced = {"gradient_checkpointing": "true"} if budget.endswith("c") else None  # "24c": as the old recipe did
            keep = None if budget.strip("qc") == "full" else float(budget.strip("qc"))
            hog = MemoryHog(keep) if keep is not None and device == "cuda" else None
            try:
                measured = run_ftapp(
                    services, ids, model_id, name, mode, flops, (args.steps, args.warmup), device, work, cold=False, overrides=forced
                )
            except Exception as exc:  # report and go on: the other budgets still count
                measured = Measured("ftapp", name, error=f"{type(exc).__name__}: {str(exc)[:400]}")
            finally:
                free = hog.free_gib if hog else None
                if hog:
                    hog.stop()
            results.append(summarize(name, budget, mode, free, measured))
            print(json.dumps(results[-1]), flush=True)
            Path(args.out, "memory_fit.json").write_text(json.dumps(results, indent=1))
        shutil.rmtree(model_dir, ignore_errors=True)
    services.close()
    print_table(results)
    os._exit(0)


def summarize(name: str, budget: str, mode: str, free_gib: float | None, measured: Measured) -> dict:
    recipe = measured.detail.get("recipe") or {}
    log = measured.detail.get("log_tail") or ""
    return {
        "model": name,
        "budget": budget,
        "mode": mode,
        "free_gib_at_start": free_gib,
        "status": measured.detail.get("status"),
        "error": measured.error,
        "tokens_per_s": measured.tokens_per_s,
        "measured_peak_gib": measured.peak_gib,
        "planned_peak_gib": recipe.get("planned_peak_gib"),
        "rows": recipe.get("rows_per_micro_batch"),
        "accumulation": recipe.get("gradient_accumulation_steps"),
        "checkpointing": recipe.get("gradient_checkpointing"),
        "offloading": recipe.get("activation_offloading"),
        "notes": recipe.get("notes"),
        "preflight": measured.detail.get("preflight"),
        "oom_recovered": "recovered from out-of-memory" in log,
        "first_loss_s": measured.first_loss_s,
        "losses": measured.losses[:3] + measured.losses[-2:],
    }


def print_table(results: list[dict]) -> None:
    print("\nmodel     budget mode  status     rows x acc ckpt  planned  measured  tok/s")
    for r in results:
        plan = f"{r.get('rows')} x {r.get('accumulation')}" if r.get("rows") else "-"
        print(
            f"{r['model']:9s} {r['budget']:6s} {r.get('mode', ''):5s} {str(r.get('status')):10s} {plan:10s} "
            f"{str(r.get('checkpointing')):5s} {r.get('planned_peak_gib')!s:8s} {r.get('measured_peak_gib')!s:9s} "
            f"{r.get('tokens_per_s')}"
        )


if __name__ == "__main__":
    main()
