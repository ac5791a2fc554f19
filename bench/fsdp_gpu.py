"""FSDP2 against DDP on two GPUs, and a model no single GPU holds (issue 20).

Each run is submitted through ftapp's services as a user would (the preflight decides or checks the strategy and
writes it into the spec, the supervisor launches ``accelerate launch`` with the FSDP2 config), on random weights in
the real shape and ftapp's ``modern default`` recipe (padding-free rows of up to 2,048 tokens, LoRA r16 on every
linear layer). Measured per run: tokens/s over all ranks after warm-up (TRL counts every rank's tokens), each GPU's
peak (used memory above the level before the launch, polled), the strategy and the reasons the preflight gave.

* ``8b``: Llama-3.1-8B's shape, LoRA, strategy ddp then fsdp2, in the same bench run.
* ``70b``: Llama-3-70B's layer shape (hidden 8192, 64 heads, 8 KV heads, MLP 28672, vocab 128256) with as many
  layers as make a whole copy too big for one GPU of ``--free-gib`` while FSDP2 over two fits (``choose_strategy``
  sizes it); each GPU is held down to ``--free-gib`` by a background process (what a smaller card leaves), and the
  run is submitted with strategy auto: the preflight must choose FSDP2 and the run must train.

    FTAPP_MLFLOW=0 python bench/fsdp_gpu.py --cases 8b,70b      # 2 GPUs (each case fits a 10-minute call)
    python bench/fsdp_gpu.py --smoke                           # CPU: 2 ranks over gloo, every code path, no numbers
    FTAPP_MLFLOW=0 python bench/fsdp_gpu.py --one-gpu          # one GPU: the FSDP2 path at world size 1, no numbers

``--smoke`` prints the chooser's decisions for these shapes on two H200-sized GPUs and the accelerate config ftapp
writes, then trains the tiny shape with FSDP2 through the supervisor (2 CPU processes over gloo, sharded checkpoints)
and loads the adapter it saved with PEFT.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch
from train_throughput import ftapp_request, open_ftapp
from train_throughput_runs import SHAPES, build_model, build_tokenizer, write_dataset

from trainer.protocol import ModelShape, choose_strategy, method_levers, method_workload

GIB = 2**30

LLAMA_70B_LAYER = dict(
    model_type="llama",
    hidden_size=8192,
    intermediate_size=28672,
    num_attention_heads=64,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=128256,
    tie_word_embeddings=False,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
)
HOG = """
import sys, time, torch
keep = int(float(sys.argv[1]) * 2**30)
free, _ = torch.cuda.mem_get_info()
held = torch.empty(max(0, free - keep), dtype=torch.uint8, device="cuda")
print("held", held.numel(), flush=True)
time.sleep(3600)
"""


def modern_workload(shape: ModelShape, mode: str = "lora"):
    """What the modern default recipe asks of each GPU (8 packed rows of up to 2,048 tokens), as the preflight plans it."""
    work = method_workload("sft", mode, rows=8, accumulation=1, max_length=2048, lora_rank=16)
    return shape, work, method_levers("sft", mode, "auto", bitsandbytes=False)


def shape_of(config: dict) -> ModelShape:
    shape = ModelShape.from_config(config)
    assert shape is not None
    return shape


def layers_needing_two_gpus(free_gib: float) -> int:
    """The fewest 70B-shaped layers whose whole copy does not fit one GPU of ``free_gib`` while FSDP2 over two does."""
    free = int(free_gib * GIB)
    for layers in range(2, 161):
        shape, work, levers = modern_workload(shape_of({**LLAMA_70B_LAYER, "num_hidden_layers": layers}))
        choice = choose_strategy(shape, work, free, 2, "auto", levers)
        if choice.strategy == "fsdp2" and choice.fits and not choice.ddp.fits:
            return layers
    raise ValueError(f"no layer count of the 70B shape needs two GPUs of {free_gib} GiB and fits them")


def print_decisions(free_gib: float) -> list[dict]:
    """The chooser's decisions for the bench's shapes on two GPUs of ``free_gib`` (pure functions: no GPU needed)."""
    rows = []
    layers = layers_needing_two_gpus(free_gib)
    cases = [
        ("llama-8b", SHAPES["llama-8b"], 139.0),
        ("llama-8b", SHAPES["llama-8b"], free_gib),
        (f"70b-shape x{layers} layers", {**LLAMA_70B_LAYER, "num_hidden_layers": layers}, free_gib),
        ("llama-70b (80 layers)", {**LLAMA_70B_LAYER, "num_hidden_layers": 80}, 139.0),
        ("llama-70b (80 layers)", {**LLAMA_70B_LAYER, "num_hidden_layers": 80}, free_gib),
    ]
    for name, config, free in cases:
        for requested in ("auto", "ddp", "fsdp2"):
            shape, work, levers = modern_workload(shape_of(config))
            choice = choose_strategy(shape, work, int(free * GIB), 2, requested, levers)
            rows.append(
                {
                    "shape": name,
                    "free_gib": free,
                    "asked": requested,
                    "strategy": choice.strategy,
                    "fits": choice.fits,
                    # Per GPU where the plan fits (the reason says the least a plan that fits no way needs).
                    "ddp_gib": round(choice.ddp.need.total / GIB, 1) if choice.ddp.fits else None,
                    "fsdp2_gib": round(choice.fsdp.need.total / GIB, 1) if choice.fsdp and choice.fsdp.fits else None,
                    "reason": choice.reasons[0],
                }
            )
    print("\nshape                    free   asked  chose  fits   DDP/GPU FSDP2/GPU")
    for r in rows:
        print(
            f"{r['shape']:24s} {r['free_gib']:5.0f}  {r['asked']:6s} {r['strategy']:6s} {r['fits']!s:6s} "
            f"{r['ddp_gib']!s:7s} {r['fsdp2_gib']!s:8s}"
        )
    return rows


class GpuPeaks:
    """Each GPU's peak used memory while a run trains, above the level before it started (polled)."""

    def __init__(self, gpus: int, interval_s: float = 0.2):
        self.gpus, self.interval_s, self._stop = gpus, interval_s, threading.Event()
        self.baseline = self._used()
        self.peaks = list(self.baseline)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _used(self) -> list[int]:
        return [total - free for free, total in (torch.cuda.mem_get_info(i) for i in range(self.gpus))]

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peaks = [max(p, u) for p, u in zip(self.peaks, self._used(), strict=True)]

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return [round(max(0, p - b) / GIB, 2) for p, b in zip(self.peaks, self.baseline, strict=True)]


class Hogs:
    """Background processes holding each GPU's free memory but ``keep_gib``: two smaller cards."""

    def __init__(self, gpus: int, keep_gib: float):
        self.processes = []
        for index in range(gpus):
            env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(index))
            process = subprocess.Popen([sys.executable, "-c", HOG, str(keep_gib)], stdout=subprocess.PIPE, text=True, env=env)
            self.processes.append(process)
            line = process.stdout.readline() if process.stdout else ""
            if not line.startswith("held"):
                self.stop()
                raise RuntimeError(f"the memory hog on GPU {index} did not start: {line!r}")

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def measure(services, request, steps: tuple[int, int], gpus: int, device: str) -> dict:
    """Submit ``request`` through the services, supervise it to the end, and read its events."""
    from trainer.protocol import PROGRESS, read_events

    peaks = GpuPeaks(gpus) if device == "cuda" else None
    run, preflight = services.runs.submit(request)
    final = services.runs.wait(run.id, timeout_s=540)
    progress = [e for e in read_events(Path(final.run_dir) / "events.jsonl").events if e.type == PROGRESS]
    rates = [float(e.data["tokens_per_s"]) for e in progress[steps[1] :] if e.data.get("tokens_per_s")]
    spec = json.loads((Path(final.run_dir) / "spec.json").read_text())
    return {
        "adapter": request.adapter_name,
        "asked": request.strategy,
        "strategy": spec.get("strategy"),
        "status": final.status,
        "error": (final.error_text or "")[-800:] if final.status != "succeeded" else None,
        "tokens_per_s": round(sum(rates) / len(rates), 1) if rates else None,
        "per_gpu_peak_gib": peaks.stop() if peaks else None,
        "losses": [round(float(e.data["loss"]), 4) for e in progress][:2] + [round(float(e.data["loss"]), 4) for e in progress][-2:],
        "preflight": preflight.summary(),
        "run_dir": final.run_dir,
    }


def run_case(case: str, args, work: Path, services, ids: dict, tokenizer) -> list[dict]:
    from ftapp.models.service import AddModelRequest

    results = []
    if case == "8b":
        name, config, keep = "llama-8b", None, None
    else:
        layers = layers_needing_two_gpus(args.free_gib)
        name, config, keep = f"70b-shape-{layers}l", {**LLAMA_70B_LAYER, "num_hidden_layers": layers}, args.free_gib
        SHAPES[name] = config
    model_dir = work / name
    started = time.monotonic()
    build_model(name, tokenizer, model_dir, "cuda")
    torch.cuda.empty_cache()
    print(f"{name}: built in {time.monotonic() - started:.0f}s", flush=True)
    model_id = services.models.add(AddModelRequest(type="project", name=name, location=str(model_dir))).id
    hogs = Hogs(2, keep) if keep else None
    try:
        for strategy in ("ddp", "fsdp2") if case == "8b" else ("auto",):
            request = replace(ftapp_request(services, ids, model_id, name, "lora", args.steps, "cuda", gpus=2), strategy=strategy)
            try:
                results.append({"case": case, **measure(services, request, (args.steps, args.warmup), 2, "cuda")})
            except Exception as exc:  # report and go on: the other runs still count
                results.append({"case": case, "asked": strategy, "error": f"{type(exc).__name__}: {str(exc)[:800]}"})
            print(json.dumps(results[-1]), flush=True)
    finally:
        if hogs:
            hogs.stop()
        shutil.rmtree(model_dir, ignore_errors=True)
    return results


def path_check(work: Path, device: str) -> list[dict]:
    """The FSDP2 path end to end where no two GPUs are lent, through the supervisor: ``cpu``, the tiny shape over two
    gloo ranks (``--smoke``); ``cuda``, Llama-3.2-1B's shape on one GPU, world size 1 (``--one-gpu``: accelerate's
    FSDP2 with bf16 mixed precision, the LoRA and QLoRA units, NCCL, sharded checkpoints, the adapter gathered).
    Each run: sharded checkpoints, and an adapter PEFT loads with trained weights. (DDP needs GPUs: without them
    accelerate runs one CPU process.)"""
    from importlib.util import find_spec

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ftapp.ids import new_id
    from ftapp.models.service import AddModelRequest
    from ftapp.run_vocabulary import RunKind
    from ftapp.runs.enqueue import enqueue
    from ftapp.runs.launching import fsdp_config
    from ftapp.runs.specs import build_train_spec

    ranks, name = (2, "tiny") if device == "cpu" else (1, "llama-1b")
    print(json.dumps(fsdp_config(ranks), indent=1))
    tokenizer = build_tokenizer(work / "tokenizer")
    write_dataset(work / "data.jsonl", 48 if device == "cpu" else 400)
    services, ids = open_ftapp(work, work / "data.jsonl")
    build_model(name, tokenizer, work / name, device)
    model_id = services.models.add(AddModelRequest(type="project", name=name, location=str(work / name))).id
    modes = ["lora"] + (["qlora"] if device == "cuda" and find_spec("bitsandbytes") else [])
    results = []
    for mode in modes:
        overrides = {"max_length": 256 if device == "cpu" else 2048, "save_strategy": "steps", "save_steps": 2}
        request = replace(ftapp_request(services, ids, model_id, name, mode, 4, device, overrides=overrides), cpu_threads=1)
        # FSDP2 on the CPU or on one GPU is no request a user can make (FT-007, FT-020): the spec is written as the
        # preflight writes it for two GPUs, and the supervisor launches it as it launches every run.
        with services.db.transaction() as tx:
            spec = build_train_spec(tx, services.settings, request, new_id(), device="cpu" if device == "cpu" else "auto", strategy="fsdp2")
        run = enqueue(
            services.db,
            services.supervisor,
            replace(spec, num_processes=ranks),
            kind=RunKind.FINETUNE,
            name=request.adapter_name,
            base_model_id=model_id,
            dataset_id=ids["dataset"],
            prompt_id=ids["prompt"],
            devices_requested="cpu" if device == "cpu" else "0",
        )
        final = services.runs.wait(run.id, timeout_s=420)
        loaded = None
        if final.status == "succeeded":
            model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(work / name), Path(final.run_dir) / "output")
            loaded = sum(p.abs().sum().item() for n, p in model.named_parameters() if "lora_B" in n) > 0
        results.append(
            {
                "mode": mode,
                "ranks": ranks,
                "status": final.status,
                "sharded_checkpoints": any(Path(final.run_dir).glob("checkpoints/checkpoint-*/pytorch_model_fsdp_0")),
                "adapter_loads_and_trained": loaded,
                "error": final.error_text,
                "log_tail": (Path(final.run_dir) / "trainer.log").read_text(errors="replace")[-3000:]
                if final.status != "succeeded"
                else None,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    services.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="8b,70b", help="8b: DDP vs FSDP2 on Llama-3.1-8B; 70b: a 70B shape two GPUs need")
    parser.add_argument("--free-gib", type=float, default=40.0, help="70b: each GPU held down to this much free memory")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=os.environ.get("OUT") or ".")
    parser.add_argument("--smoke", action="store_true", help="CPU: 2 gloo ranks on a tiny model, every code path, no numbers")
    parser.add_argument("--one-gpu", action="store_true", help="the FSDP2 path on one GPU (world size 1), where two are not lent")
    args = parser.parse_args()
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and shutil.disk_usage(shm).free > 160 * GIB else None
    work = Path(tempfile.mkdtemp(prefix="ftapp-fsdp-", dir=base))
    results: dict = {"decisions": print_decisions(args.free_gib)}
    try:
        if args.smoke or args.one_gpu:
            results["smoke" if args.smoke else "one_gpu"] = path_check(work, "cpu" if args.smoke else "cuda")
        else:
            tokenizer = build_tokenizer(work / "tokenizer")
            write_dataset(work / "data.jsonl", 1500)
            services, ids = open_ftapp(work, work / "data.jsonl")
            results["runs"] = [r for case in args.cases.split(",") for r in run_case(case.strip(), args, work, services, ids, tokenizer)]
            services.close()
        Path(args.out, "fsdp_gpu.json").write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_runs(results.get("runs", []))
    os._exit(0)


def print_runs(runs: list[dict]) -> None:
    if not runs:
        return
    print("\ncase asked  strategy status     tokens/s   per-GPU peak (GiB)")
    for r in runs:
        print(
            f"{r['case']:4s} {r.get('asked')!s:6s} {r.get('strategy')!s:8s} {r.get('status')!s:10s} {r.get('tokens_per_s')!s:10s} {r.get('per_gpu_peak_gib')}"
        )


if __name__ == "__main__":
    main()
