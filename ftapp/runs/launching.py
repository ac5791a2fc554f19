"""Which spec a queued run is launched with, and the command that launches it (with accelerate's config for it).

Only a spec ftapp wrote into the run's own folder, ``<home>/runs/<run id>``, is ever launched: the row (which an
import or a hand may have written) only names the run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ftapp.ids import is_uuid
from ftapp.run_vocabulary import RunKind
from ftapp.settings import Settings
from storage import RunRecord
from trainer.protocol import DDP, FSDP2, SPEC_FILE, RunSpec, read_run_spec


class LaunchRefused(Exception):
    """A queued run whose row or folder is not what ftapp made: it is failed, and nothing is started."""


def launch_folder(settings: Settings, run_id: str) -> Path:
    """Where the spec of a run that ftapp launches lives: ``<home>/runs/<run id>``, always; refused for an id that is
    not a UUID (an imported ``../../x`` names no folder of this home)."""
    if not is_uuid(run_id):
        raise LaunchRefused(f"run id {run_id[:100]!r} is not a UUID, so it names no run folder of this home")
    return settings.runs_dir / run_id


# In the run's folder, next to spec.json: accelerate's config for the run's strategy. Always given to ``accelerate
# launch``: without one it reads the user's own default (~/.cache/huggingface/accelerate/default_config.yaml), whose
# distributed_type, gpu_ids or dynamo settings would turn ftapp's DDP run into DeepSpeed, another set of GPUs or a
# refusal ("Less than two GPU ids...").
CONFIG_FILES = {DDP: "accelerate_ddp.json", FSDP2: "accelerate_fsdp2.json"}
FSDP_CONFIG_FILE = CONFIG_FILES[FSDP2]
RANK_LOGS_DIR = "ranks"  # torchrun's per-rank stdout/stderr files, also teed into trainer.log with a [rank] prefix


def ddp_config(processes: int) -> dict[str, Any]:
    """accelerate's config for DDP, one process per GPU of the run's (CUDA_VISIBLE_DEVICES, set by the supervisor:
    ``gpu_ids`` "all" leaves it as it is)."""
    return {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": processes,
        "gpu_ids": "all",
        "mixed_precision": "no",  # the trainer's business (bf16 through SFTConfig)
        "use_cpu": False,
    }


def fsdp_config(processes: int) -> dict[str, Any]:
    """accelerate's config for FSDP2 (full shard) on this machine's GPUs; ``accelerate launch`` reads it into the
    FSDP_* environment the trainer's accelerate plugin starts from."""
    return {
        **ddp_config(processes),
        "distributed_type": "FSDP",
        "fsdp_config": {
            "fsdp_version": 2,
            # Each decoder layer is a unit, its LoRA adapters inside it: FSDP2 shards per parameter, so frozen base
            # weights and trained adapters share a unit. No fsdp_transformer_layer_cls_to_wrap: accelerate then takes
            # the model's own _no_split_modules (its decoder layer class), which config.json alone cannot name.
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_reshard_after_forward": True,  # full shard: a layer's gathered weights are freed after its forward
            # Checkpoints: each rank writes its own slice (torch.distributed.checkpoint) and reads it back on resume;
            # the adapter or model a run saves is gathered on rank 0 by the trainer (trainer.fsdp).
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": True,  # rank 0 reads the weights, the others get their slices from it
            "fsdp_sync_module_states": True,  # accelerate requires it with the above
            "fsdp_offload_params": False,
            "fsdp_activation_checkpointing": False,  # the memory plan turns on the trainer's own checkpointing
        },
    }


def write_accelerate_config(run_dir: Path, processes: int, strategy: str) -> Path:
    path = run_dir / CONFIG_FILES[strategy]
    config = fsdp_config(processes) if strategy == FSDP2 else ddp_config(processes)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def launch_command(verb: str, spec_path: Path, processes: int, strategy: str = DDP) -> list[str]:
    """The command that starts the run. Several processes go through ``accelerate launch``, one per GPU, with the
    config of the spec's strategy written here into the run's folder (the spec itself is never rewritten)."""
    if processes <= 1 and strategy != FSDP2:
        return [sys.executable, "-m", "trainer", verb, str(spec_path)]
    run_dir = spec_path.parent
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(write_accelerate_config(run_dir, processes, strategy)),
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        # Precision is the trainer's business (bf16 through SFTConfig), so accelerate adds none.
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",  # a free port: runs on disjoint GPUs start side by side
        # Every rank's stdout and stderr in trainer.log, each line prefixed with its rank, and in ranks/ per rank.
        "--tee",
        "3",
        "--log_dir",
        str(run_dir / RANK_LOGS_DIR),
        "-m",
        "trainer",
        verb,
        str(spec_path),
    ]


def launch_spec(settings: Settings, run: RunRecord) -> tuple[Path, RunSpec]:
    """The spec ftapp wrote for this run into ``<home>/runs/<run id>``, and nothing else: the row (which an
    import or a hand may have written) only names the run; a row whose run_dir is not where that spec puts the
    run's files is refused, and so is an id that is not a UUID."""
    runs_dir = settings.runs_dir.resolve()
    folder = launch_folder(settings, run.id).resolve()
    spec_path = folder / SPEC_FILE
    if folder.parent != runs_dir or not spec_path.is_file() or spec_path.resolve().parent != folder:
        raise LaunchRefused(f"no spec.json that ftapp wrote in {runs_dir / run.id}")
    spec = read_run_spec(spec_path)
    where = Path(spec.run_dir).resolve() if spec.run_id == run.id else None
    if where is None or where.name != run.id or (where != folder and run.kind != RunKind.FINETUNE):
        raise LaunchRefused(f"{spec_path} is not the spec of run {run.id}")
    if not run.run_dir or Path(run.run_dir).resolve() != where:
        raise LaunchRefused(f"the run's row names the folder {str(run.run_dir)[:300]!r}, not {where}, where its spec puts its files")
    return spec_path, spec
