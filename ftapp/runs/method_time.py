"""DPO's and GRPO's time besides their training FLOPs, for the preflight (issue 19: a GRPO run was estimated at
"≈ 0.3 min" and took 141 s, its sampling not counted): each pass over their short padded micro-batches has a
launch-bound floor, and GRPO samples each optimizer step's completions token by token, each decode step costing the
larger of reading the weights from memory and the engine's per-layer overhead
(``trainer.protocol.choose_generation_engine`` says which engine)."""

from __future__ import annotations

import os
from importlib.util import find_spec

from ftapp.prompts.config_schemas import GrpoSettings, TrainingSettings, resolve
from ftapp.runs.devices import DeviceChoice
from ftapp.runs.machine import Machine
from trainer.protocol import FitPlan, choose_generation_engine

HBM_BYTES_PER_S = {
    "H200": 4.8e12,
    "H100": 3.35e12,
    "A100": 2.0e12,
    "L40S": 0.86e12,
    "L40": 0.86e12,
    "4090": 1.0e12,
    "A6000": 0.77e12,
    "A10": 0.6e12,
    "L4": 0.3e12,
    "V100": 0.9e12,
    "T4": 0.32e12,
}
# Per decoder layer and decode step, what an engine costs besides reading the weights: eager generate launches some
# 60 kernels a layer (PEFT's unfused adapters included); a replayed CUDA graph or vLLM only the kernels' own time.
# Measured for a 16-layer 1B shape on an H200 with transformers 5.24, 64 completions of 64 tokens a step
# (bench/preference_gpu.py): generate 2.44 s and graphed 0.178 s of sampling a step, prefill included. paged and
# vllm are not measured here (neither runs on the GPU machine we measure on): paged as generate, vllm below graphed.
DECODE_LAYER_S = {"generate": 2.4e-3, "paged": 2.4e-3, "graphed": 0.18e-3, "vllm": 0.15e-3}
# Per decoder layer and pass (forward, backward x2, reference) over a micro-batch: the launch-bound floor of DPO's and
# GRPO's short padded batches. DPO passes chosen and rejected separately: twice the passes.
PASS_LAYER_S = 3.0e-3
# DPO and GRPO set up more than SFT before their first step (TRL's trainer, the reference) and end with an evaluation
# that samples: ~35-40 s besides the steps for a 1B shape (bench/preference_gpu.py, issue 19).
METHOD_SETUP_S = 25.0


def method_seconds(
    method: str,
    training_mode: str,
    args: TrainingSettings,
    method_settings: dict,
    reference_model: bool,
    steps: int,
    num_layers: int,
    num_parameters: int,
    devices: DeviceChoice,
    machine: Machine,
    plan: FitPlan | None,
    setup_measured: bool = False,
) -> float:
    """DPO's and GRPO's time besides the training FLOPs: their set-up before the first step and final evaluation
    (unless ``setup_measured``: the start-up and finish figures come from runs of the same method, which had both),
    the launch-bound floor of each pass over their short padded micro-batches, and GRPO's token-by-token sampling of
    each optimizer step's completions."""
    if method == "sft" or devices.kind == "cpu" or not num_layers:
        return 0.0
    micro_batches = plan.recipe.accumulation if plan else args.gradient_accumulation_steps
    passes = 3 + (1 if reference_model or method == "dpo" else 0)  # forward, backward (x2), reference
    passes *= 2 if method == "dpo" else 1
    seconds = (0.0 if setup_measured else METHOD_SETUP_S) + steps * micro_batches * passes * num_layers * PASS_LAYER_S
    if method == "grpo":
        grpo = resolve(GrpoSettings, method_settings)
        engine = expected_generation_engine("cuda", training_mode)
        weight_bytes = num_parameters * (0.56 if training_mode == "qlora" else 2.0)
        per_token = max(weight_bytes / _bandwidth(devices, machine), num_layers * DECODE_LAYER_S[engine])
        seconds += steps * grpo.max_completion_length * per_token
    return seconds


def expected_generation_engine(device_kind: str, training_mode: str) -> str:
    """The engine a GRPO run started now would sample with (this process's environment, what is installed)."""
    try:
        return choose_generation_engine(
            os.environ, device_kind=device_kind, training_mode=training_mode, vllm_installed=find_spec("vllm") is not None
        )
    except ValueError:  # a mistyped FTAPP_GRPO_GENERATION: the trainer will refuse it; estimate the slowest
        return "generate"


def _bandwidth(devices: DeviceChoice, machine: Machine) -> float:
    gpu = machine.gpu(devices.gpu_ids[0]) if devices.gpu_ids else None
    name = gpu.name if gpu else ""
    return next((rate for key, rate in HBM_BYTES_PER_S.items() if key in name), 1.0e12)
