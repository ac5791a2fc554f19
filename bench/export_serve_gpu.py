"""GPU check of export and serving at the process boundary: `python -m trainer export` (merge on CUDA in the
base's bf16, verified in a fresh process) and `python -m trainer serve` (transformers serve on CUDA, a real
chat completion, then a stop that must free the GPU). Prints one JSON summary line.

    python bench/export_serve_gpu.py --out /tmp/export-gpu

Needs a CUDA GPU, `transformers serve`'s extras (fastapi, uvicorn, openai) and nvidia-smi. It drives the
trainer directly (no database), as the supervisor would: new session, events file, SIGTERM to the group.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bf16_base_and_adapter(out: Path) -> tuple[Path, Path]:
    """The demo model in bf16 (so the merge must keep a dtype that is not float32) and a random LoRA on it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.demo.model import build_demo_kit

    kit = build_demo_kit(out / "kit")
    base = out / "base-bf16"
    model = AutoModelForCausalLM.from_pretrained(kit.model_dir, dtype=torch.bfloat16)
    model.save_pretrained(base)
    AutoTokenizer.from_pretrained(kit.model_dir).save_pretrained(base)
    adapted = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(0)
    for name, parameter in adapted.named_parameters():
        if "lora_B" in name:
            parameter.data = (torch.randn(parameter.shape, generator=generator) * 0.02).to(parameter.dtype)
    adapted.save_pretrained(out / "adapter")
    return base, out / "adapter"


def run_verb(verb: str, spec, timeout_s: float) -> list[dict]:
    from trainer.protocol import write_spec

    path = write_spec(spec)
    env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", "0"))
    with open(Path(spec.run_dir) / "trainer.log", "ab") as log:
        subprocess.run(
            [sys.executable, "-m", "trainer", verb, str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            timeout=timeout_s,
            check=False,
        )
    return events(spec)


def events(spec) -> list[dict]:
    path = Path(spec.run_dir) / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def gpu_processes() -> dict[int, int]:
    """pid -> MiB of every process holding GPU memory."""
    out = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"], capture_output=True, text=True, check=False
    ).stdout
    rows = [line.split(",") for line in out.splitlines() if line.strip()]
    return {int(pid): int(mib) for pid, mib in rows}


def gpu_used_mib() -> int:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True, check=False
    ).stdout
    return int(out.split()[0])


def merge(out: Path, base: Path, adapter: Path) -> dict:
    from trainer.protocol import ExportSpec, ModelSource

    spec = ExportSpec(
        run_id="merge",
        run_dir=str(out / "merge"),
        action="merge",
        source=str(adapter),
        name="demo-merged",
        model_card="# demo-merged\n",
        base=ModelSource(str(base)),
        device="cuda",
    )
    Path(spec.run_dir).mkdir(parents=True)
    started = time.monotonic()
    seen = run_verb("export", spec, 900)
    verification = json.loads((Path(spec.run_dir) / "verification.json").read_text()) if seen and seen[-1]["type"] == "done" else {}
    config = json.loads((spec.merged_dir / "config.json").read_text()) if spec.merged_dir.is_dir() else {}
    return {
        "events": [e["type"] for e in seen],
        "seconds": round(time.monotonic() - started, 1),
        "verified": verification.get("verified"),
        "prompts_matched": verification.get("prompts_matched"),
        "max_logit_diff": verification.get("max_logit_diff"),
        "saved_dtype": config.get("dtype") or config.get("torch_dtype"),
        "failure": next((e.get("message") for e in seen if e["type"] == "failed"), None),
    }


def serve(out: Path, base: Path, adapter: Path) -> dict:
    from trainer.protocol import ModelSource, ServeSpec, write_spec

    spec = ServeSpec(
        run_id="serve",
        run_dir=str(out / "serve-run"),
        model=ModelSource(str(base)),
        served_name="demo-lora",
        adapter_path=str(adapter),
        device="cuda",
        startup_timeout_s=600,
    )
    Path(spec.run_dir).mkdir(parents=True)
    before = gpu_used_mib()
    log = open(Path(spec.run_dir) / "trainer.log", "ab")  # noqa: SIM115 - the run's log, open while it runs
    child = subprocess.Popen(
        [sys.executable, "-m", "trainer", "serve", str(write_spec(spec))],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="0"),
    )
    deadline, started = time.monotonic() + 600, None
    while time.monotonic() < deadline and child.poll() is None and started is None:
        started = next((e for e in events(spec) if e["type"] == "started"), None)
        time.sleep(0.5)
    result: dict = {"started": started is not None}
    if started:
        body = json.dumps(
            {"model": started["served_model"], "messages": [{"role": "user", "content": "Where is my order?"}], "max_tokens": 16}
        ).encode()
        request = urllib.request.Request(f"{started['base_url']}/chat/completions", data=body, headers={"Content-Type": "application/json"})
        t0 = time.monotonic()
        with urllib.request.urlopen(request, timeout=300) as response:
            answer = json.loads(response.read())
        result.update(
            answer=answer["choices"][0]["message"]["content"],
            answer_s=round(time.monotonic() - t0, 2),
            server_gpu_mib=gpu_processes().get(started["server_pid"]),
            gpu_used_mib_serving=gpu_used_mib(),
        )
    os.killpg(child.pid, signal.SIGTERM)  # what the supervisor's cancel does
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    time.sleep(1)
    result.update(
        exit_status=child.returncode,
        last_event=(events(spec) or [{}])[-1].get("type"),
        gpu_used_mib_before=before,
        gpu_used_mib_after_stop=gpu_used_mib(),
        server_still_on_gpu=bool(started and started["server_pid"] in gpu_processes()),
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base, adapter = bf16_base_and_adapter(args.out)
    summary = {"merge": merge(args.out, base, adapter), "serve": serve(args.out, base, adapter)}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
