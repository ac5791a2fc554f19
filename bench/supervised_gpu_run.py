"""GPU check of the training path: a random-initialised Llama-3.2-1B-shaped model trained with LoRA and
with QLoRA through ftapp's own services and supervisor (spec.json -> `python -m trainer sft` -> events ->
SQLite), on a learnable synthetic task (support request -> intent). Prints one JSON summary line.

    FTAPP_MLFLOW=0 python bench/supervised_gpu_run.py --steps 60
    FTAPP_MLFLOW=0 python bench/supervised_gpu_run.py --modes lora --gpus 0,1 --processes 2   # DDP

Needs a CUDA GPU; on a host without mlflow set FTAPP_MLFLOW=0.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from model_shapes import LLAMA_32_1B


def build_model(kit_dir: Path, out: Path) -> Path:
    """Llama-3.2-1B's shape with random weights, built on the GPU, saved with the demo tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(kit_dir / "model")
    config = LlamaConfig(
        **LLAMA_32_1B,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def train(services, registered, name: str, mode: str, steps: int, gpus: str, processes: int) -> dict:
    from ftapp.runs.fine_tune_request import FineTuneRequest

    presets = {p.name: p for p in services.configs.presets()}["modern default"].configs
    request = FineTuneRequest(
        base_model_id=registered["model"],
        dataset_id=registered["dataset"],
        prompt_id=registered["prompt"],
        adapter_name=name,
        training_mode=mode,
        gpus=gpus,
        num_processes=processes,
        training_arguments_config_id=presets["training_arguments"].id,
        lora_config_id=presets["lora_config"].id,
        bitsandbytes_config_id=presets["bitsandbytes_config"].id if mode == "qlora" else None,
        overrides={
            "max_steps": steps,
            "per_device_train_batch_size": 16,
            "logging_steps": 5,
            "eval_steps": steps,
            "save_steps": steps,
            "max_length": 256,
            "learning_rate": 1e-3,
        },
    )
    started = time.monotonic()
    run, preflight = services.runs.submit(request)
    final = services.runs.wait(run.id, timeout_s=1500)
    loss = services.runs.metrics(run.id).get("loss", [])
    tokens_per_s = services.runs.metrics(run.id).get("tokens_per_s", [])
    return {
        "mode": mode,
        "gpus": final.gpus,
        "processes": processes,
        "status": final.status,
        "error": (final.error_text or "")[-1500:],
        "wall_s": round(time.monotonic() - started, 1),
        "first_loss": loss[0] if loss else None,
        "last_loss": loss[-1] if loss else None,
        "points": len(loss),
        "tokens_per_s_last": tokens_per_s[-1][1] if tokens_per_s else None,
        "preflight": preflight.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--modes", default="lora,qlora")
    parser.add_argument("--gpus", default="0", help="GPU ids for each run, e.g. 0,1 with --processes 2 (DDP)")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    from ftapp.datasets.service import AddDatasetRequest
    from ftapp.models.service import AddModelRequest
    from ftapp.prompts.service import AddPromptRequest
    from ftapp.services import open_services
    from ftapp.settings import Settings
    from trainer.demo.model import build_demo_kit

    work = Path(tempfile.mkdtemp(prefix="ftapp-gpu-"))
    kit = build_demo_kit(work / "kit", pretrain_steps=0)
    model_dir = build_model(work / "kit", work / "llama-3.2-1b-shape")
    services = open_services(Settings.from_env(work / "home"))
    model = services.models.add(AddModelRequest(type="project", name="llama-1b-shape", location=str(model_dir)))
    dataset = services.datasets.add(AddDatasetRequest(name="intents", location=str(kit.dataset_path)))
    prompt = services.prompts.add(
        AddPromptRequest(
            name="intent", dataset_id=dataset.id, **{k: kit.prompt[k] for k in ("prompt_template", "input_template", "completion_template")}
        )
    )
    registered = {"model": model.id, "dataset": dataset.id, "prompt": prompt.id}
    results = [train(services, registered, f"gpu-{mode}", mode, args.steps, args.gpus, args.processes) for mode in args.modes.split(",")]
    services.close()
    print(json.dumps({"model_parameters": model.num_parameters, "results": results}, default=str))
    os._exit(0)


if __name__ == "__main__":
    main()
