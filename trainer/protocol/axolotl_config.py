"""Axolotl configs as a run uses them. Standard library only.

A stored Axolotl YAML is hostile input: Axolotl imports the modules a config names (``plugins``, a dotted dataset
``type``, ``trl.reward_funcs``), runs a model repository's code (``trust_remote_code``), downloads kernels, pushes to
the Hub with the host's token, talks to trackers and servers, and reads or writes any path it is given. ftapp refuses
the keys that run code when a config is saved, and all of them when a run is submitted (``axolotl_config_problems``);
the trainer checks once more before it starts, since a spec can be written by hand. What is left decides the hyper-parameters; the run decides
the rest: ``axolotl_run_config`` writes the run's model, its one registered dataset and its own folders into the config.

Axolotl pins its own transformers, TRL, PEFT and gradio (0.19: transformers 5.16.1, trl 1.9.0, peft 0.20.0, gradio
6.10.0), older than ftapp's, so it lives in a Python environment of its own: ``FTAPP_AXOLOTL_PYTHON`` names that
interpreter, and ``python -m trainer axolotl`` hands the run over to it when its own Python has no ``axolotl``.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from importlib.util import find_spec
from typing import Any

from trainer.protocol.core import DataSource

AXOLOTL = "axolotl"  # the framework, the trainer verb and the package
FRAMEWORKS = ("trl", AXOLOTL)
AXOLOTL_PYTHON_ENV = "FTAPP_AXOLOTL_PYTHON"
RUN_CONFIG_FILE = "axolotl.yaml"  # in the run directory: the config the run trains with
PREPARED_DIR = "axolotl_prepared"  # in the run directory: Axolotl's tokenized copy of the dataset
AXOLOTL_INSTALL = (
    "Axolotl pins older transformers/TRL/PEFT/gradio than ftapp, so give it a Python of its own: "
    "python3 -m venv ~/axolotl-venv && ~/axolotl-venv/bin/pip install torch==2.13.0 && "
    "~/axolotl-venv/bin/pip install axolotl==0.19.0, then start ftapp with FTAPP_AXOLOTL_PYTHON=~/axolotl-venv/bin/python"
)

MAX_CONFIG_CHARS = 64 * 1024
MAX_DEPTH = 12
MAX_NODES = 5_000

_PUSH = "pushes to the Hugging Face Hub with the host's token"
_ONE_DATASET = "a run trains on the one dataset it is given (its `datasets` entry)"
_MODEL = "the run's registered model provides it (base_model is set to that model)"
_RESUME = "ftapp resumes a run from its own checkpoints (`ftapp runs resume`)"
_TRACKER = "sends the run to an outside tracker or server"
# Never stored: a config that names code to run (dotted dataset types and Hub kernels are refused alongside).
CODE_KEYS: dict[str, str] = {
    "trust_remote_code": "runs Python code from the model's or dataset's repository",
    "plugins": "imports the Python modules it names",
    "reward_funcs": "imports the Python functions it names",
    "torchdistx_path": "imports a module from a path",
    "use_kernels": "downloads compiled kernels from the Hub and runs them",
}
# Never run: what would reach outside the run (the network, the host's token, other folders, more processes). A stored
# config may hold them (one written for another machine); a run refuses it until they are gone. Paths are checked then.
RUN_KEYS: dict[str, str] = {
    "deepspeed": "starts DeepSpeed from a file of its own; an ftapp run is one process",
    "use_ray": "starts Ray workers",
    "vllm": "starts or reaches a vLLM server",
    "vllm_server_host": "reaches a vLLM server",
    "rl": "ftapp's Axolotl runs are supervised fine-tuning; for DPO or GRPO use the TRL framework's method",
    "hub_model_id": _PUSH,
    "hub_strategy": _PUSH,
    "hub_revision": _PUSH,
    "push_to_hub": _PUSH,
    "push_dataset_to_hub": _PUSH,
    "test_datasets": _ONE_DATASET,
    "pretraining_dataset": _ONE_DATASET,
    "base_model_config": _MODEL,
    "tokenizer_config": _MODEL,
    "lora_model_dir": "continues an adapter from a folder; an Axolotl run in ftapp starts a new adapter",
    "resume_from_checkpoint": _RESUME,
    "auto_resume_from_checkpoints": _RESUME,
    "axolotl_config_path": "Axolotl sets it itself",
    "use_otel_metrics": _TRACKER,
    "otel_metrics_host": _TRACKER,
}
TRACKER_PREFIXES = (
    "wandb_",
    "comet_",
    "trackio_",
    "mlflow_",
    "swanlab_",
    "use_wandb",
    "use_comet",
    "use_trackio",
    "use_mlflow",
    "use_swanlab",
)
PATH_KEYS = frozenset({"path", "data_files", "output_dir", "dataset_prepared_path", "logging_dir", "base_model"})
PATH_SUFFIXES = ("_path", "_dir", "_dirs", "_file", "_files")
ADAPTERS = ("lora", "qlora")
# axolotl.prompt_strategies.load imports ``.<type>`` from the package a dotted type names: only a plain strategy name
# (with Axolotl's ``.load_*`` function suffix or ``:style``) keeps that import inside axolotl.prompt_strategies.
DATASET_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}(\.load(_[a-z0-9_]{1,63})?)?(:[a-z0-9_]{1,63})?")
# On the CPU: no bf16/fp16/tf32, Axolotl's Triton LoRA kernels and flash attention need CUDA, packing needs flash attention.
CPU_SETTINGS: dict[str, Any] = {
    "bf16": False,
    "fp16": False,
    "tf32": False,
    "flash_attention": False,
    "sample_packing": False,
    "lora_mlp_kernel": False,
    "lora_qkv_kernel": False,
    "lora_o_kernel": False,
}
_LOCAL_KINDS = {"project_csv": "csv", "project_json": "json", "project_jsonl": "json", "project_parquet": "parquet"}


def _is_set(value: Any) -> bool:
    # Templates list keys with empty values (``wandb_project:``, ``deepspeed:``): those ask for nothing.
    return value not in (None, False, "", [], {})


def _path_problem(value: Any) -> str | None:
    texts = value if isinstance(value, list) else [value]
    for text in texts:
        if not isinstance(text, str):
            continue
        parts = re.split(r"[\\/]", text)
        if text.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", text) or "://" in text or ".." in parts:
            return (
                f"names {text[:120]!r}: only a relative path without '..' (or a Hub id) is accepted here; "
                "ftapp sets the model, the dataset's path, output_dir and dataset_prepared_path to the run's own"
            )
    return None


def _walk(value: Any, where: str, depth: int, problems: list[tuple[str, str]], count: list[int], to_run: bool) -> None:
    count[0] += 1
    if depth > MAX_DEPTH:
        problems.append((where, f"is nested deeper than {MAX_DEPTH} levels"))
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, f"{where}[{index}]", depth + 1, problems, count, to_run)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append((where, f"has a key that is not text ({key!r})"))
            continue
        path = f"{where}.{key}" if where else key
        if key in CODE_KEYS and _is_set(item):
            problems.append((path, f"is refused: it {CODE_KEYS[key]}"))
        elif not to_run:
            pass
        elif key in RUN_KEYS and _is_set(item):
            problems.append((path, f"is refused: it {RUN_KEYS[key]}"))
        elif key.startswith(TRACKER_PREFIXES) and _is_set(item):
            problems.append((path, f"is refused: it {_TRACKER}; ftapp records the run's metrics itself"))
        elif (key in PATH_KEYS or key.endswith(PATH_SUFFIXES)) and (problem := _path_problem(item)):
            problems.append((path, problem))
        _walk(item, path, depth + 1, problems, count, to_run)


def _dataset_problems(datasets: Any, to_run: bool) -> list[tuple[str, str]]:
    entries = datasets if isinstance(datasets, list) else []
    if to_run and (len(entries) != 1 or not isinstance(entries[0], dict)):
        return [("datasets", "must be a list of one entry (with its `type`): the run writes its registered dataset into it")]
    problems: list[tuple[str, str]] = []
    for index, entry in enumerate(entries):
        kind = entry.get("type") if isinstance(entry, dict) else None
        where = f"datasets[{index}].type"
        if isinstance(kind, dict):
            if not all(isinstance(k, str) and isinstance(v, (str, bool, int, type(None))) for k, v in kind.items()):
                problems.append((where, "a custom format holds plain settings only (field names and format strings)"))
        elif (kind is not None or to_run) and not (isinstance(kind, str) and DATASET_TYPE.fullmatch(kind)):
            problems.append(
                (
                    where,
                    f"must be one of Axolotl's dataset types such as alpaca, completion, chat_template, input_output "
                    f"(got {str(kind)[:80]!r}); a dotted module name would import code from outside Axolotl",
                )
            )
    return problems


def axolotl_config_problems(values: Any, *, to_run: bool = True) -> list[tuple[str, str]]:
    """Every reason a parsed Axolotl config cannot be kept (keys that run code, its size) or, ``to_run``, cannot be run
    (keys that reach outside the run, paths that leave it, one dataset entry with a type, a known adapter), as (field,
    sentence) pairs. A saved config may still be a template with blanks, or written for another machine; a run's not."""
    if not isinstance(values, dict):
        return [("config", f"an Axolotl config is a mapping of settings, got {type(values).__name__}")]
    problems: list[tuple[str, str]] = []
    count = [0]
    _walk(values, "", 0, problems, count, to_run)
    if count[0] > MAX_NODES:
        problems.append(("config", f"holds {count[0]:,} values; at most {MAX_NODES:,}"))
    problems += _dataset_problems(values.get("datasets"), to_run)
    adapter = values.get("adapter")
    if to_run and adapter not in (None, "", *ADAPTERS):
        problems.append(("adapter", f"must be lora, qlora or empty (a full fine-tune), got {str(adapter)[:40]!r}"))
    attention = values.get("attn_implementation")
    if isinstance(attention, str) and "/" in attention:
        problems.append(("attn_implementation", f"{attention[:80]!r} is a Hub kernel: it downloads compiled code and runs it"))
    return problems


def axolotl_training_mode(values: Mapping[str, Any]) -> str:
    """ftapp's name for what the config trains: lora, qlora (a quantized base) or full."""
    if values.get("adapter") == "qlora" or (values.get("adapter") and (values.get("load_in_4bit") or values.get("load_in_8bit"))):
        return "qlora"
    return "lora" if values.get("adapter") == "lora" else "full"


def axolotl_run_config(
    values: Mapping[str, Any], *, model: str, data: DataSource, run_dir: str, resume_from: str | None, device: str
) -> tuple[dict[str, Any], list[str]]:
    """The config a run trains with, and notes on what the device changed: the user's settings with the run's model,
    dataset, checkpoint folder and prepared-data folder written in (``axolotl_config_problems`` found nothing first)."""
    config = copy.deepcopy(dict(values))
    config["base_model"] = model
    entry = dict(config["datasets"][0])
    entry.pop("data_files", None)
    if data.kind == "huggingface":
        entry.update(path=data.hub_name, split=data.hub_split)
        entry.pop("ds_type", None)
        if data.hub_config:
            entry["name"] = data.hub_config
    else:
        entry["path"] = data.path
        if data.kind in _LOCAL_KINDS:
            entry["ds_type"] = _LOCAL_KINDS[data.kind]
        else:  # a saved Hugging Face dataset folder: load_from_disk
            entry.pop("ds_type", None)
    config["datasets"] = [entry]
    config["output_dir"] = os.path.join(run_dir, "checkpoints")
    config["dataset_prepared_path"] = os.path.join(run_dir, PREPARED_DIR)
    if resume_from:
        config["resume_from_checkpoint"] = resume_from
    notes = []
    if device == "cpu":
        changed = sorted(key for key, value in CPU_SETTINGS.items() if config.get(key) not in (None, value))
        config.update(CPU_SETTINGS)
        if changed:
            notes.append(f"on the CPU: {', '.join(changed)} off (they need CUDA)")
    return config, notes


def has_axolotl(python: str) -> bool:
    """Whether ``python`` can import axolotl (looked up, not imported: importing it takes ~10 s)."""
    # Not realpath: every venv's python links to the same binary, and its site-packages are what differ.
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        return find_spec(AXOLOTL) is not None
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return False
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('axolotl') else 3)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def axolotl_python(environ: Mapping[str, str]) -> str | None:
    """The interpreter that runs Axolotl: this one when it has the package, else ``FTAPP_AXOLOTL_PYTHON`` when that has it."""
    if find_spec(AXOLOTL) is not None:
        return sys.executable
    named = os.path.expanduser(environ.get(AXOLOTL_PYTHON_ENV, "").strip())
    return named if named and has_axolotl(named) else None
