"""An Axolotl run through the run contract without the app: the demo model (or a model folder given), the demo rows as
an alpaca file, a spec of framework axolotl, ``python -m trainer axolotl`` in a subprocess, then its events checked
(started, progress with loss, a checkpoint, the adapter, done) and one JSON summary line printed.

For a machine whose Python has Axolotl but not ftapp's app libraries (gradio, SQLAlchemy): a GPU host with Axolotl's
wheels carried, or here on the CPU with the Axolotl environment's own Python (trainer.protocol.axolotl_config says
how to make one):

    /path/to/axolotl-venv/bin/python bench/axolotl_gpu_run.py --steps 8            # CPU here, GPU where there is one
    python3 bench/axolotl_gpu_run.py --steps 60 --model /path/to/model             # a real model folder
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.protocol import DataSource, ModelSource, TrainSpec, read_events, write_spec  # noqa: E402

CONFIG = {
    "datasets": [{"path": "train.jsonl", "type": "alpaca"}],
    "val_set_size": 0.1,
    "sequence_len": 256,
    "adapter": "lora",
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "lora_target_linear": True,
    "micro_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "learning_rate": 0.002,
    "optimizer": "adamw_torch",
    "lr_scheduler": "constant",
    "bf16": "auto",
    "logging_steps": 1,
    "save_steps": 4,
    "eval_steps": 4,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--model", help="a model folder (default: the demo model, built here)")
    parser.add_argument("--out", help="where the run goes (default: a temporary folder)")
    args = parser.parse_args()
    base = Path(args.out or tempfile.mkdtemp(prefix="axolotl-run-"))
    base.mkdir(parents=True, exist_ok=True)
    from trainer.demo.model import build_demo_kit  # torch and transformers: only once the arguments are read

    kit = build_demo_kit(base / "kit")
    rows = [json.loads(line) for line in kit.dataset_path.read_text().splitlines()]
    data = base / "alpaca.jsonl"
    data.write_text("".join(json.dumps({"instruction": r["request"], "input": "", "output": r["intent"]}) + "\n" for r in rows))
    gpu = bool(os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip()) and _has_cuda()
    run_dir = base / "run"
    run_dir.mkdir()
    spec = TrainSpec(
        run_id="bench",
        run_dir=str(run_dir),
        method="sft",
        training_mode="lora",
        model=ModelSource(source=args.model or str(kit.model_dir)),
        data=DataSource(kind="project_jsonl", path=str(data)),
        adapter_name="axolotl-bench",
        training={},
        device="cuda" if gpu else "cpu",
        framework="axolotl",
        axolotl_config={**CONFIG, "max_steps": args.steps},
    )
    started = time.monotonic()
    with open(run_dir / "trainer.log", "wb") as log:
        code = subprocess.run(
            [sys.executable, "-m", "trainer", "axolotl", str(write_spec(spec))], cwd=ROOT, stdout=log, stderr=log
        ).returncode
    events = read_events(run_dir / "events.jsonl").events
    kinds = [e.type for e in events]
    losses = [e.data["loss"] for e in events if e.type == "progress"]
    first = next((e for e in events if e.type == "started"), None)
    summary = {
        "exit_code": code,
        "seconds": round(time.monotonic() - started, 1),
        "device": first.data.get("device_name") if first else None,
        "events": {kind: kinds.count(kind) for kind in dict.fromkeys(kinds)},
        "loss_first_last": [losses[0], losses[-1]] if losses else None,
        "adapter": sorted(p.name for p in (run_dir / "output").iterdir()) if (run_dir / "output").is_dir() else None,
        "failed": next((e.data for e in events if e.type == "failed"), None),
        "log_tail": (run_dir / "trainer.log").read_text(errors="replace")[-1500:] if code else None,
    }
    print(json.dumps(summary))
    ok = code == 0 and kinds[-1:] == ["done"] and "artifact" in kinds and len(losses) >= 2 and losses[-1] < losses[0]
    return 0 if ok else 1


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
