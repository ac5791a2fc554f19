"""What every training verb (sft, dpo, grpo) refuses before the ML imports. Standard library only."""

from __future__ import annotations

import os
from pathlib import Path

from trainer.protocol import FSDP2, FSDP_METHODS, SPEC_STRATEGIES, TrainSpec, check_device
from trainer.protocol.template_fields import template_problems


def check_training_spec(spec: TrainSpec, verb: str) -> None:
    """Refuse a spec ``python -m trainer <verb>`` cannot run, naming the field to fix."""
    if spec.method != verb:
        raise ValueError(f"spec.method is {spec.method!r}; `python -m trainer {verb}` runs method {verb!r} only")
    if spec.framework != "trl":
        raise ValueError(f"spec.framework is {spec.framework!r}; `python -m trainer {verb}` runs ftapp's own recipes (trl)")
    if spec.training_mode not in ("lora", "qlora", "full"):
        raise ValueError(f"spec.training_mode must be lora, qlora or full, got {spec.training_mode!r}")
    check_device(spec.device)
    check_strategy(spec)
    if spec.training_mode == "qlora" and spec.device == "cpu":
        raise ValueError("QLoRA needs a CUDA GPU: bitsandbytes 4-bit weights do not train on CPU; use training_mode 'lora'")
    for name in ("prompt_template", "input_template", "completion_template"):
        problems = template_problems(getattr(spec.data, name) or "")[1]
        if problems:  # the same rule as ftapp's PR-007: plain {column} fields only
            raise ValueError(f"spec.data.{name} {'; '.join(problems)}")
    if spec.data.kind != "huggingface" and spec.data.path and not Path(spec.data.path).exists():
        raise FileNotFoundError(f"dataset not found: {spec.data.path}")
    if spec.resume_from and not (Path(spec.resume_from) / "trainer_state.json").is_file():
        raise FileNotFoundError(f"spec.resume_from is not a checkpoint directory (no trainer_state.json): {spec.resume_from}")
    if spec.init_adapter:
        if verb == "sft":
            raise ValueError(
                "spec.init_adapter continues an adapter with DPO or GRPO; an SFT run starts a new one "
                "(or continues a checkpoint of its own with resume_from)"
            )
        if spec.training_mode == "full":
            raise ValueError("spec.init_adapter continues a LoRA adapter: use training_mode 'lora' or 'qlora'")
        if not (Path(spec.init_adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"spec.init_adapter is not an adapter directory (no adapter_config.json): {spec.init_adapter}")


def check_strategy(spec: TrainSpec) -> None:
    """A strategy this trainer runs, for a method it runs it with, started the way it needs: a sharded spec launched
    without accelerate's FSDP2 config (by hand, or by an older launcher) would silently train whole copies, the run
    the strategy was chosen to avoid."""
    if spec.strategy not in SPEC_STRATEGIES:
        raise ValueError(f"spec.strategy must be one of {', '.join(SPEC_STRATEGIES)}, got {spec.strategy!r}")
    if spec.strategy != FSDP2:
        return
    if spec.method not in FSDP_METHODS:
        raise ValueError(f"spec.strategy 'fsdp2' runs method {', '.join(FSDP_METHODS)} only, not {spec.method!r}: use 'ddp'")
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() != "true" or os.environ.get("FSDP_VERSION") != "2":
        raise ValueError(
            "spec.strategy is 'fsdp2' but this process was not started by `accelerate launch` with an FSDP2 config "
            "(ftapp writes accelerate_fsdp2.json into the run's folder when it launches the run)"
        )
