"""``python -m trainer sft SPEC_JSON``: one supervised fine-tuning run as a process of the run contract.

Exit statuses are ``trainer.run_process``'s; SIGTERM stops at once before training and after a
checkpoint during it. This module stays on the standard library: a spec that cannot run (QLoRA on
CPU, a missing dataset) is refused before torch, transformers and peft are imported, which takes
~10 s. The recipe itself lives in ``trainer.sft_recipe``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.protocol import TrainSpec, read_spec


def main(spec_path: str) -> NoReturn:
    run_process.main("sft", spec_path, read_spec, check_spec, _train)


def _train(spec: TrainSpec, events, cancellation: Cancellation) -> bool:
    from trainer.sft_recipe import run_sft  # the ~10 s of ML imports start here

    return run_sft(spec, events, cancellation)


def check_spec(spec: TrainSpec) -> None:
    """Refuse specs this verb cannot run, with the field to fix, before the expensive imports."""
    if spec.method != "sft":
        raise ValueError(f"spec.method is {spec.method!r}; `python -m trainer sft` runs method 'sft' only")
    if spec.training_mode not in ("lora", "qlora", "full"):
        raise ValueError(f"spec.training_mode must be lora, qlora or full, got {spec.training_mode!r}")
    if spec.device not in ("cpu", "cuda"):
        raise ValueError(f"spec.device must be 'cpu' or 'cuda', got {spec.device!r}")
    if spec.training_mode == "qlora" and spec.device == "cpu":
        raise ValueError("QLoRA needs a CUDA GPU: bitsandbytes 4-bit weights do not train on CPU; use training_mode 'lora'")
    if spec.data.kind != "huggingface" and spec.data.path and not Path(spec.data.path).exists():
        raise FileNotFoundError(f"dataset not found: {spec.data.path}")
    if spec.resume_from and not (Path(spec.resume_from) / "trainer_state.json").is_file():
        raise FileNotFoundError(f"spec.resume_from is not a checkpoint directory (no trainer_state.json): {spec.resume_from}")
