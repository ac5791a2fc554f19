"""Training throughput on one GPU: the seed-001 recipe, plain TRL and ftapp's recipe, in one run (issue 7).

Per model shape (random weights built on the GPU from the real config, saved like a downloaded model):

* ``seed``: seed 001's defaults through TRL: QLoRA nf4 (double quant, bf16 compute: its fp16 fails on
  bf16 weights), ``prepare_model_for_kbit_training``, batch 1 x GA 4, paged AdamW, LoRA r16 on q/v with
  dropout 0.05, SDPA.
* ``plain TRL``: TRL 1.16's SFTConfig defaults (batch 8 padded, SDPA, gradient checkpointing on)
  with a bf16 LoRA r16 on all linear layers (ftapp's LoRA, so the loss curves compare).
* ``ftapp``: the ``modern default`` preset submitted through ftapp's services, so the supervisor launches
  ``python -m trainer sft spec.json`` and the recipe is what ``trainer.training_arguments`` chooses on
  this machine (it is printed, from the run's ``recipe.json``). Its throughput, loss curve and the time
  from ``submit`` to the first loss point come from the run's ``events.jsonl``; the inductor and Triton
  caches start empty, as on a user's first run. Peak memory is the device's used memory (polled) above
  what it was before the launch: what the process reserved, an upper bound of what it allocated.
* ``ftapp QLoRA``: the same with ``training_mode=qlora``.
* ``parity`` (first model): plain TRL's exact batches (same rows, order and seed) through ftapp's
  kernel choices (attention, padding-free collation, Liger, fused optimizer, fused adapters); its
  per-step loss must be within 2% of plain TRL's and its gradient norms non-zero.
* ``profile``: ftapp's recipe in this process on the spec ftapp writes: the first step under cProfile
  (where a cold start goes), then two steps under torch.profiler, device time by kernel family.

Every variant trains on the same rows (lognormal lengths, see ``train_throughput_runs``) with the same
seed; tokens/s counts real (non-padding) tokens over the steps after the warm-up.

    FTAPP_MLFLOW=0 HF_HUB_OFFLINE=1 python bench/train_throughput.py --plan "llama-8b:ftapp-cold,seed,trl,qlora"
    python bench/train_throughput.py --smoke            # tiny shapes on the CPU, every code path
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from train_throughput_report import print_tables
from train_throughput_runs import (
    LORA_R16_ALL,
    Measured,
    MemoryPoller,
    build_model,
    build_tokenizer,
    flops_per_token,
    kernel_family,
    run_trl,
    step_clock,
    summarize,
    write_dataset,
)

STEPS = {  # (steps, warm-up steps) per variant on a GPU; the ftapp runs compile flex attention in steps 1-2
    "seed": (9, 2),
    "plain TRL": (14, 2),
    "parity": (20, 2),
    "ftapp": (14, 3),
    "ftapp QLoRA": (11, 3),
    "ftapp 2 GPUs": (14, 3),
    "ftapp warm": (8, 3),
}
SMOKE_STEPS = {
    "seed": (4, 1),
    "plain TRL": (6, 1),
    "parity": (6, 1),
    "ftapp": (5, 1),
    "ftapp QLoRA": (5, 1),
    "ftapp 2 GPUs": (5, 1),
    "ftapp warm": (5, 1),
}
_RUN_NUMBERS = itertools.count(1)  # adapter names are unique in ftapp
LEARNING_RATE = 1e-3  # high enough that 30 steps of LoRA on a random model show a clear loss curve


def open_ftapp(work: Path, dataset: Path):
    from ftapp.datasets.service import AddDatasetRequest
    from ftapp.prompts.service import AddPromptRequest
    from ftapp.services import open_services
    from ftapp.settings import Settings

    services = open_services(Settings.from_env(work / "home"))
    data = services.datasets.add(AddDatasetRequest(name="lognormal", location=str(dataset)))
    prompt = services.prompts.add(
        AddPromptRequest(
            name="chain",
            dataset_id=data.id,
            prompt_template="{question} {answer}",
            input_template="{question}",
            completion_template=" {answer}",
        )
    )
    return services, {"dataset": data.id, "prompt": prompt.id}


def ftapp_request(
    services, ids: dict, model_id: str, model_name: str, mode: str, steps: int, device: str, gpus: int = 1, overrides: dict | None = None
):
    from ftapp.runs.fine_tune_request import FineTuneRequest

    presets = {p.name: p for p in services.configs.presets()}["modern default"].configs
    return FineTuneRequest(
        base_model_id=model_id,
        dataset_id=ids["dataset"],
        prompt_id=ids["prompt"],
        adapter_name=f"{model_name}-{mode}-{next(_RUN_NUMBERS)}",
        training_mode=mode,
        gpus=",".join(map(str, range(gpus))) if device == "cuda" else "cpu",
        num_processes=gpus,
        learning_rate=LEARNING_RATE,
        train_test_split=1.0,
        training_arguments_config_id=presets["training_arguments"].id,
        lora_config_id=presets["lora_config"].id,
        bitsandbytes_config_id=presets["bitsandbytes_config"].id if mode == "qlora" else None,
        overrides={
            "max_steps": steps,
            "logging_steps": 1,
            "max_length": 2048,
            "save_strategy": "no",
            "eval_strategy": "no",
            **(overrides or {}),
        },
    )


def use_compile_cache(work: Path, cold: bool) -> str:
    """Point inductor and Triton (this process and the runs it launches) at an empty cache, as on a user's
    first run, or at the bench's shared one, as on any later run of the same model."""
    path = Path(tempfile.mkdtemp(prefix="cold-cache-", dir=work)) if cold else work / "compile-cache"
    os.environ["TORCHINDUCTOR_CACHE_DIR"], os.environ["TRITON_CACHE_DIR"] = str(path / "inductor"), str(path / "triton")
    return "cold" if cold else f"shared ({len(list(path.rglob('*')))} files)"


def run_ftapp(
    services,
    ids: dict,
    model_id: str,
    model_name: str,
    mode: str,
    flops: float,
    steps: tuple[int, int],
    device: str,
    work: Path,
    cold: bool,
    gpus: int = 1,
    overrides: dict | None = None,
    warm: bool = False,
) -> Measured:
    """A run submitted through ftapp's services and supervised to the end, measured from its events."""
    from trainer.protocol import PROGRESS, STARTED, read_events

    variant = "ftapp QLoRA" if mode == "qlora" else "ftapp" if gpus == 1 else f"ftapp {gpus} GPUs"
    variant += " warm" if warm else ""
    request = ftapp_request(services, ids, model_id, model_name, mode, steps[0], device, gpus, overrides)
    result = Measured(variant, model_name, detail={"compile_cache": use_compile_cache(work, cold)})
    if device == "cuda":
        torch.cuda.empty_cache()
    if warm:
        wait_for_warm_trainer(services)
    poller = MemoryPoller()
    submitted = time.time()
    run, preflight = services.runs.submit(request)
    final = services.runs.wait(run.id, timeout_s=420)
    result.peak_gib = round(poller.stop(), 2) if device == "cuda" else None
    events = read_events(Path(final.run_dir) / "events.jsonl").events
    recipe_path = Path(final.run_dir) / "recipe.json"
    result.detail.update(
        status=final.status,
        run_dir=final.run_dir,
        preflight=preflight.summary(),
        recipe=json.loads(recipe_path.read_text()) if recipe_path.exists() else None,
    )
    log = Path(final.run_dir) / "trainer.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    result.detail["log_tail"] = text[-2500:] or None
    result.detail["setup"] = [line for line in text.splitlines() if line.startswith("setup: ")]
    if final.status != "succeeded":
        result.error = f"{final.status}: {(final.error_text or '')[-600:]}"
    started = next((e.time for e in events if e.type == STARTED), None)
    progress = [e for e in events if e.type == PROGRESS]
    if started is None or not progress:
        result.error = result.error or "no progress events"
        return result
    result.first_loss_s = round(progress[0].time - submitted, 1)
    result.detail.update(submit_to_started_s=round(started - submitted, 1), first_step_s=round(progress[0].time - started, 1))
    times, tokens, previous, total = [], [], started, 0.0
    for event in progress:
        total += float(event.data.get("tokens_per_s") or 0.0) * (event.time - previous)  # tokens this step
        previous = event.time
        times.append(event.time)
        tokens.append(total)
    result.losses = [float(e.data["loss"]) for e in progress if e.data.get("loss") is not None]
    result.grad_norms = [float(e.data.get("grad_norm") or 0.0) for e in progress]
    if result.losses and not any(result.losses):
        result.error = "the loss is 0 at every step: nothing was trained (does the tokenizer encode the rows?)"
    summarize(result, times, tokens, steps[1], flops)
    if result.mfu is not None:
        result.mfu = round(result.mfu / gpus, 4)  # per GPU: the ceiling doubles with the GPUs
    return result


def wait_for_warm_trainer(services, timeout_s: float = 180) -> None:
    """As in the app, open a while before someone starts a run: its supervisor keeps a warm trainer process
    (ftapp.runs.standby) that has done the imports."""
    os.environ["FTAPP_WARM_TRAINER"] = "1"
    services.supervisor.start_background()
    log = services.settings.home / "standby.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        process = services.supervisor.standby._process
        ready = log.read_text().count("standby: ready") if log.exists() else 0
        if process is not None and ready >= services.supervisor.standby.starts:
            return
        time.sleep(0.5)
    raise TimeoutError("the warm trainer process did not get ready")


def profile_ftapp(services, request, work: Path, flops: float, warmup: int = 3, profiled: int = 2) -> dict:
    """ftapp's recipe in this process on the spec ftapp writes: where the first step's time goes (cProfile,
    compile times), then device time by kernel family over ``profiled`` later steps (torch.profiler)."""
    import cProfile
    import io
    import pstats

    from transformers import TrainerCallback

    from ftapp.runs.specs import build_train_spec
    from trainer.cancellation import Cancellation
    from trainer.recipes.sft import setup

    class Sink:
        def emit(self, kind, /, **data):
            return None

    with services.db.transaction() as tx:
        spec = build_train_spec(tx, services.settings, request, "profile", device="cuda" if torch.cuda.is_available() else "cpu")
    spec = replace(spec, run_dir=str(work / "profile-run"), mlflow_tracking_uri=None)
    Path(spec.run_dir).mkdir(parents=True)
    started = time.perf_counter()
    setup_profile = cProfile.Profile()  # where submit -> first step goes besides imports (data, model, trainer)
    setup_profile.enable()
    run = setup(spec, Sink(), Cancellation())
    setup_profile.disable()
    setup_s = time.perf_counter() - started
    setup_stats = pstats.Stats(setup_profile, stream=io.StringIO()).stats
    setup_rows = sorted(
        ((round(v[3], 2), round(v[2], 2), f"{Path(k[0]).parent.name}/{Path(k[0]).name}:{k[2]}") for k, v in setup_stats.items()),
        key=lambda r: -r[0],
    )
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    activity = torch.profiler.ProfilerActivity.CUDA if cuda else torch.profiler.ProfilerActivity.CPU
    profiler = torch.profiler.profile(activities=[activity])
    first_step = cProfile.Profile()

    class Window(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                first_step.enable()
            if state.global_step == warmup:
                sync()
                profiler.start()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                sync()
                first_step.disable()
            if state.global_step == warmup + profiled:
                sync()
                profiler.stop()

    clock = step_clock(run.trainer)
    run.trainer.add_callback(Window())
    run.trainer.add_callback(clock)
    train_started = time.perf_counter()
    run.trainer.train()
    stats = pstats.Stats(first_step, stream=io.StringIO()).stats  # {(file, line, name): (cc, nc, self, cumulative, callers)}
    rows = [(round(v[3], 1), round(v[2], 1), f"{Path(k[0]).parent.name}/{Path(k[0]).name}:{k[2]}") for k, v in stats.items()]
    marks = ("_inductor", "_dynamo", "_functorch", "triton", "liger", "flex", "subprocess", "bitsandbytes", "chunked")
    by_self = sorted(rows, key=lambda r: -r[1])[:12]
    by_cumulative = sorted((r for r in rows if any(m in r[2] for m in marks)), key=lambda r: -r[0])[:16]
    compile_times = torch._dynamo.utils.compile_times(repr="str", aggregate=True)
    wall_us = (clock.times[-1] - clock.times[warmup - 1]) * 1e6
    families: dict[str, float] = {}
    kernels = []
    for event in profiler.key_averages():
        device_us = getattr(event, "self_device_time_total" if cuda else "self_cpu_time_total", 0) or 0
        if device_us <= 0:
            continue
        kernels.append((device_us, event.key[:90], event.count))
        families[kernel_family(event.key)] = families.get(kernel_family(event.key), 0.0) + device_us
    kernels.sort(reverse=True)
    tokens = clock.tokens[-1] - clock.tokens[warmup - 1]
    times = clock.times
    del run, clock
    gc.collect()
    torch.cuda.empty_cache()
    return {
        "setup_s": round(setup_s, 1),
        "setup_by_cumulative_s": [r for r in setup_rows if r[0] >= 0.3][:60],
        "first_step_s": round(times[0] - train_started, 1),
        "step_s": [round(b - a, 2) for a, b in zip(times, times[1:])],
        "wall_ms": round(wall_us / 1e3, 1),
        "busy_ms": round(sum(families.values()) / 1e3, 1),
        "tokens": tokens,
        "mfu": round(tokens / (wall_us / 1e6) * flops / 790e12, 4),
        "families_ms": {k: round(v / 1e3, 1) for k, v in sorted(families.items(), key=lambda kv: -kv[1])},
        "top_kernels": [(round(us / 1e3, 1), name, count) for us, name, count in kernels[:14]],
        "first_step_by_self_s": by_self,
        "first_step_by_cumulative_s": by_cumulative,
        "compile_times": str(compile_times)[-3000:],
    }


VARIANTS = {
    "ftapp": "ftapp",
    "ftapp-cold": "ftapp",
    "ftapp-warm": "ftapp warm",
    "ftapp-2gpu": "ftapp 2 GPUs",
    "qlora": "ftapp QLoRA",
    "seed": "seed",
    "trl": "plain TRL",
    "parity": "parity",
    "profile": "profile",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--plan",
        default="llama-1b:ftapp-cold,seed,parity;llama-8b:ftapp-cold,seed,trl,qlora,profile",
        help=f"MODEL:VARIANT,...;... in run order; variants: {', '.join(VARIANTS)} (ftapp-cold: empty compile "
        "caches, as on a user's first run; the others share the bench's cache, as on later runs)",
    )
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--deadline-s", type=float, default=540, help="start no variant after this many seconds")
    parser.add_argument("--out", default=os.environ.get("OUT") or ".")
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU: every code path, no numbers")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a training argument for the ftapp variants, e.g. max_tokens_per_batch=32768",
    )
    args = parser.parse_args()
    began = time.monotonic()
    overrides = {key: json.loads(value) for key, _, value in (item.partition("=") for item in args.set)}
    device = "cpu" if args.smoke else "cuda"
    plan = [(name, wanted.split(",")) for name, wanted in (part.split(":") for part in args.plan.split(";"))]
    if args.smoke:
        plan = [("tiny", ["ftapp-cold", "seed", "parity", "profile", "ftapp", "ftapp-warm"])]
    steps = SMOKE_STEPS if args.smoke else STEPS
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and shutil.disk_usage(shm).free > 48 * 2**30 else None
    work = Path(tempfile.mkdtemp(prefix="ftapp-bench-", dir=base))
    tokenizer = build_tokenizer(work / "tokenizer")
    rows = write_dataset(work / "data.jsonl", 300 if args.smoke else args.rows)
    from trainer.data.loading import split_rows

    order = split_rows(len(rows), fraction=1.0, train_split=1.0, seed=42).train_indices
    ordered = [rows[i] for i in order]  # the order ftapp's trainer reads them in
    services, ids = open_ftapp(work, work / "data.jsonl")
    results: list[Measured] = []
    profiles: dict[str, dict] = {}
    info: dict[str, dict] = {}

    def record(result: Measured) -> None:
        results.append(result)
        Path(args.out, "train_throughput.json").write_text(
            json.dumps({"results": [asdict(r) for r in results], "models": info, "profiles": profiles}, indent=1, default=str)
        )
        print(
            f"[{time.monotonic() - began:5.0f}s] {result.model} {result.variant}: {result.tokens_per_s} tok/s "
            f"mfu={result.mfu} peak={result.peak_gib} first_loss={result.first_loss_s}s error={result.error}",
            flush=True,
        )

    from ftapp.models.service import AddModelRequest

    for name, wanted in plan:
        if "parity" in wanted:
            wanted = [v for v in wanted if v != "trl"]  # the parity check's plain TRL run measures it
        if time.monotonic() - began > args.deadline_s:
            record(Measured("build", name, error="not run: past --deadline-s"))
            continue
        model_dir = work / name
        info[name] = build_model(name, tokenizer, model_dir, device)
        flops = info[name]["flops_per_token"] = flops_per_token(info[name], rows)
        model_id = services.models.add(AddModelRequest(type="project", name=name, location=str(model_dir))).id
        for key in wanted:
            variant = VARIANTS[key]
            if time.monotonic() - began > args.deadline_s:
                record(Measured(variant, name, error="not run: past --deadline-s"))
                continue
            try:
                if variant.startswith("ftapp"):
                    measured = [
                        run_ftapp(
                            services,
                            ids,
                            model_id,
                            name,
                            "qlora" if key == "qlora" else "lora",
                            flops,
                            steps[variant],
                            device,
                            work,
                            cold=key == "ftapp-cold",
                            gpus=2 if key == "ftapp-2gpu" else 1,
                            overrides=overrides,
                            warm=key == "ftapp-warm",
                        )
                    ]
                elif variant == "profile":
                    use_compile_cache(work, cold=False)
                    request = ftapp_request(services, ids, model_id, name, "lora", 5, device)
                    profiles[name] = profile_ftapp(services, request, work, flops)
                    measured = [Measured("profile", name, detail=profiles[name])]
                else:
                    use_compile_cache(work, cold=False)
                    measured = run_baseline(variant, name, model_dir, ordered, steps[variant], flops, device)
            except Exception as exc:  # report and go on: the other variants' numbers still count
                measured = [Measured(variant, name, error=f"{type(exc).__name__}: {str(exc)[:400]}")]
            for result in measured:
                record(result)
        shutil.rmtree(model_dir, ignore_errors=True)
    services.close()
    print_tables(results, info, profiles)
    os._exit(0)  # the supervisor's threads and CUDA teardown are of no interest here


def run_baseline(variant: str, name: str, model_dir: Path, rows: list, steps: tuple[int, int], flops: float, device: str) -> list[Measured]:
    from trainer.model_loading import detect_device
    from trainer.training_arguments import resolve_training

    common = dict(steps=steps[0], warmup=steps[1], flops=flops, device=device)
    trl_defaults = {"max_length": 2048, "learning_rate": LEARNING_RATE, "lr_scheduler_type": "constant"}
    if variant == "seed":
        seed_lora = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
        sft = {
            "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": 4,
            "max_grad_norm": 0.3,
            "max_length": 2048,
            "learning_rate": 2e-4,
            "lr_scheduler_type": "constant",
            "activation_checkpointing": False,
            "optim": "paged_adamw_32bit" if device == "cuda" else "adamw_torch",
        }
        return [run_trl(variant, name, model_dir, rows, sft=sft, lora=seed_lora, quantized=device == "cuda", **common)]
    if variant == "plain TRL":
        return [run_trl(variant, name, model_dir, rows, sft=trl_defaults, lora=LORA_R16_ALL, **common)]
    if variant == "parity":  # plain TRL's batches and settings through ftapp's kernel choices
        plain = run_trl("plain TRL", name, model_dir, rows, sft=trl_defaults, lora=LORA_R16_ALL, **common)
        caps = detect_device(device)
        resolved = resolve_training(
            {"padding_free": True, "optim": "adamw_torch_fused", "max_length": 2048},
            caps,
            training_mode="lora",
            output_dir="unused",
            has_validation=False,
            completion_only_loss=True,
            assistant_only_loss=False,
        )
        padding_free = bool(resolved.config.get("padding_free"))
        sft = {
            **trl_defaults,
            "padding_free": padding_free,
            "optim": resolved.config["optim"],
            "activation_checkpointing": False,
            **({"max_length": None} if padding_free else {}),
        }
        ours = run_trl(
            variant,
            name,
            model_dir,
            rows,
            sft=sft,
            lora=LORA_R16_ALL,
            attn=resolved.attn_implementation,
            liger=resolved.config["use_liger_kernel"],
            fused_adapters=True,
            **common,
        )
        pairs = list(zip(plain.losses, ours.losses))
        diffs = [abs(a - b) / abs(a) for a, b in pairs if a]
        ours.detail.update(
            attn=resolved.attn_implementation,
            plain_losses=plain.losses,
            steps_compared=len(pairs),
            max_rel_diff=round(max(diffs), 4) if diffs else None,
            mean_rel_diff=round(sum(diffs) / len(diffs), 4) if diffs else None,
            grad_norms_nonzero=bool(ours.grad_norms) and all(g > 0 for g in ours.grad_norms),
            passed=bool(diffs) and max(diffs) <= 0.02 and all(g > 0 for g in ours.grad_norms),
        )
        return [plain, ours]
    raise ValueError(f"unknown variant {variant!r}")


if __name__ == "__main__":
    main()
