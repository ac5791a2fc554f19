"""FSDP2 in a training process (issue 20): what ftapp adds around accelerate's FSDP plugin.

``accelerate launch --config_file <run>/accelerate_fsdp2.json`` (written by ``ftapp.runs.launching``) puts the plugin's
settings in the environment (ACCELERATE_USE_FSDP, FSDP_VERSION=2, ...) and transformers' Trainer hands the model to
accelerate's ``fsdp2_prepare_model``, which shards each decoder layer (its LoRA adapters inside it) over the ranks.
Around that, this module:

* starts the process group before the weights load, so that transformers reads them on rank 0 alone
  (``fsdp_cpu_ram_efficient_loading``) and the other ranks receive only their slices;
* on the CPU (the tests, ``bench/fsdp_gpu.py --smoke``) puts the same plugin into accelerate's state, which routes
  FSDP to accelerators only: the same Trainer path then shards over gloo;
* gathers what the run keeps: the trained parameters as full tensors on rank 0, saved by PEFT in the format a
  one-GPU run writes (``adapter_model.safetensors`` + ``adapter_config.json``), or the whole model of a full
  fine-tune. Checkpoints stay sharded (``SHARDED_STATE_DICT``): each rank writes and, on resume, reads its slice.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from trainer.protocol import FSDP2, TrainSpec


def is_sharded(spec: TrainSpec) -> bool:
    return spec.strategy == FSDP2


def start_process_group(device_kind: str) -> None:
    """Join the other ranks now, before any weights load (transformers then reads them on rank 0 alone)."""
    from accelerate.state import PartialState

    PartialState(cpu=device_kind == "cpu")


def shard_on_cpu() -> None:
    """Switch accelerate's state to the FSDP plugin its launcher configured, on the CPU: AcceleratorState keeps FSDP
    for accelerators, and the Trainer reads the plugin from that shared state when it makes its Accelerator. Call it
    after the TrainingArguments are made (making them resets accelerate's state) and before the Trainer."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, TorchDynamoPlugin

    plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* environment the launcher set
    state = AcceleratorState(cpu=True, fsdp_plugin=plugin, dynamo_plugin=TorchDynamoPlugin(), _from_accelerator=True)
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # AcceleratorState re-reads it from here


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """A parameter whole: a sharded DTensor is all-gathered (every rank must call this, in the same order)."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def gathered_state(model: torch.nn.Module, training_mode: str, main: bool) -> dict[str, Any]:
    """What the run saves, whole, on the main rank ({} elsewhere). Adapters: only the trained parameters (MBs, not the
    frozen base); a full fine-tune: every parameter, moved to host memory one at a time."""
    if training_mode == "full":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    state = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            whole = _full(parameter.detach())
            if main:
                state[name] = whole.cpu().clone()
    return state


def save_gathered(trainer: Trainer, output_dir: str, training_mode: str) -> None:
    """Save the result of a sharded run as a one-GPU run would: gathered on rank 0, written there by
    ``save_pretrained`` (PEFT keeps the adapter's tensors from the state it is given) with the tokenizer."""
    main = trainer.is_world_process_zero()
    state = gathered_state(trainer.model, training_mode, main)
    if main:
        model = trainer.accelerator.unwrap_model(trainer.model)
        model.save_pretrained(output_dir, state_dict=state)
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(output_dir)
    trainer.accelerator.wait_for_everyone()
