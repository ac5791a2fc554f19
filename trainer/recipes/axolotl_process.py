"""``python -m trainer axolotl SPEC_JSON``: an Axolotl run as a process of the run contract.

Axolotl lives in a Python environment of its own (``trainer.protocol.axolotl_config`` says why). When this Python has
no ``axolotl`` and ``FTAPP_AXOLOTL_PYTHON`` names one that has it, this process becomes that interpreter
(``os.execve``): the same pid, start time and process group, so the supervisor's record of the run, its cancel and its
re-attach all still hold; this project goes on its PYTHONPATH, for ``trainer``. Up to that point and through
``check_spec`` this module is standard library only: a spec that cannot run is refused before Axolotl's ~10 s of
imports. Without Axolotl anywhere the run fails and says how to install it; it never falls back to the TRL recipe.
The recipe itself lives in ``trainer.recipes.axolotl``.
"""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import NoReturn

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.protocol import (
    AXOLOTL,
    AXOLOTL_INSTALL,
    AXOLOTL_PYTHON_ENV,
    TrainSpec,
    axolotl_config_problems,
    axolotl_python,
    check_device,
    read_spec,
)

HANDED_OVER_ENV = "FTAPP_AXOLOTL_HANDED_OVER"  # set in the interpreter a run is handed to: never hand it on again
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def main(spec_path: str) -> NoReturn:
    # Axolotl sends usage telemetry (its config among it) unless told not to, from the moment it is imported:
    # a local studio tells nobody what it trains. Set before the hand-over, so that the interpreter inherits it.
    os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"
    os.environ["DO_NOT_TRACK"] = "1"
    hand_over(spec_path)  # returns only when this Python is the one to run Axolotl (or none is)
    run_process.main(AXOLOTL, spec_path, read_spec, check_spec, _train)


def hand_over(spec_path: str) -> None:
    """Become ``FTAPP_AXOLOTL_PYTHON`` running this same command, when this Python has no Axolotl and that one has."""
    if find_spec(AXOLOTL) is not None or os.environ.get(HANDED_OVER_ENV):
        return
    python = axolotl_python(os.environ)
    if python is None:
        return  # check_spec fails the run with the way to install it
    paths = [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, **{HANDED_OVER_ENV: "1", "PYTHONPATH": os.pathsep.join(paths)})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(python, [python, "-m", "trainer", AXOLOTL, spec_path], env)


def _train(spec: TrainSpec, events, cancellation: Cancellation) -> bool:
    from trainer.recipes.axolotl import run_axolotl  # Axolotl's imports (torch, transformers, its own) start here

    return run_axolotl(spec, events, cancellation)


def check_spec(spec: TrainSpec) -> None:
    """Refuse specs Axolotl cannot run here, naming the field to fix, before the expensive imports."""
    if find_spec(AXOLOTL) is None:
        named = os.environ.get(AXOLOTL_PYTHON_ENV, "")
        where = f"; {AXOLOTL_PYTHON_ENV}={named} has none either" if named else f" and {AXOLOTL_PYTHON_ENV} is not set"
        raise ModuleNotFoundError(f"Axolotl is not installed in {sys.executable}{where}. {AXOLOTL_INSTALL}")
    if spec.framework != AXOLOTL or not isinstance(spec.axolotl_config, dict):
        raise ValueError(f"`python -m trainer {AXOLOTL}` runs specs of framework axolotl with an axolotl_config (got {spec.framework!r})")
    if spec.method != "sft":
        raise ValueError(f"spec.method is {spec.method!r}; an Axolotl run trains SFT")
    problems = axolotl_config_problems(spec.axolotl_config)
    if problems:  # ftapp checked it; a spec can still be written by hand
        raise ValueError("spec.axolotl_config: " + "; ".join(f"{where} {why}" for where, why in problems))
    check_device(spec.device)
    if spec.training_mode == "qlora" and spec.device == "cpu":
        raise ValueError("the Axolotl config loads a quantized base (qlora, load_in_4bit/8bit), which needs a CUDA GPU")
    if spec.data.kind != "huggingface" and spec.data.path and not Path(spec.data.path).exists():
        raise FileNotFoundError(f"dataset not found: {spec.data.path}")
    if spec.resume_from and not (Path(spec.resume_from) / "trainer_state.json").is_file():
        raise FileNotFoundError(f"spec.resume_from is not a checkpoint directory (no trainer_state.json): {spec.resume_from}")
