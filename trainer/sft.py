"""``python -m trainer sft SPEC_JSON``: one supervised fine-tuning run as a process of the run contract.

Exit status: 0 after ``done``; 1 after ``failed {error_type, message}`` (or, when the spec itself
cannot be read, with only a message on stderr, since there is no events file to write to);
``EXIT_CANCELLED`` (143) on SIGTERM, before training at once, during training after a checkpoint.

This module stays on the standard library: the SIGTERM handler is installed and a spec that cannot
run (QLoRA on CPU, a missing dataset) is refused before torch, transformers and peft are imported,
which takes ~10 s. The recipe itself lives in ``trainer.sft_recipe``.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from trainer.cancellation import Cancellation
from trainer.protocol import EXIT_CANCELLED, FAILED, EventWriter, TrainSpec, read_spec

MAX_MESSAGE_CHARS = 4000


class _SilentEvents:
    """Events of non-main processes of a multi-GPU run: rank 0 alone reports, or every line would repeat."""

    def emit(self, kind: str, /, **data: Any) -> None:
        return None

    def close(self) -> None:
        return None


def main(spec_path: str) -> NoReturn:
    # A local studio has no business pinging the hub about which trainer ran.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # dataloader workers fork after tokenizing
    cancellation = Cancellation().install()
    code = run(Path(spec_path), cancellation)
    sys.stdout.flush()
    sys.stderr.flush()
    # Every event is flushed already; interpreter teardown (torch, thread pools) would cost ~1.5 s.
    os._exit(code)


def run(spec_path: Path, cancellation: Cancellation) -> int:
    try:
        spec = read_spec(spec_path)
    except Exception as exc:  # no spec, no events path: stderr is all there is
        print(f"sft failed: cannot read the spec {spec_path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    main_process = os.environ.get("RANK", "0") == "0"
    events = EventWriter(spec.events_path, stdout=sys.stdout) if main_process else _SilentEvents()
    try:
        check_spec(spec)
        from trainer.sft_recipe import run_sft  # the ~10 s of ML imports start here

        return 0 if run_sft(spec, events, cancellation) else EXIT_CANCELLED
    except BaseException as exc:  # the process ends here either way; the supervisor needs to know why
        traceback.print_exc()
        message = (str(exc) or type(exc).__name__)[:MAX_MESSAGE_CHARS]
        events.emit(FAILED, error_type=type(exc).__name__, message=message)
        return 1
    finally:
        events.close()


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
