"""The device, tokenizer and model a run trains: LoRA adapters, QLoRA (a 4-bit base) or every parameter.

Models load from a local ``save_pretrained`` directory or a hub id; with ``HF_HUB_OFFLINE=1`` a hub
id resolves from the local cache only (transformers reads the variable itself). LoRA is not applied
here: the ``LoraConfig`` goes to ``SFTTrainer``, which wraps the model after seeding, so adapter
initialisation is reproducible, and which handles QLoRA's adapter dtypes.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from typing import Any

import torch
from peft import LoraConfig, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

from trainer.protocol import ModelSource, TrainSpec
from trainer.training_arguments import DeviceCaps, ResolvedTraining

LORA_SETTINGS = frozenset({
    "r", "lora_alpha", "lora_dropout", "bias", "task_type", "target_modules", "use_rslora", "use_dora", "modules_to_save",
})
BITSANDBYTES_SETTINGS = frozenset({
    "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_compute_dtype", "bnb_4bit_use_double_quant",
    "bnb_4bit_quant_storage", "quant_method",
})


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))  # set by accelerate/torchrun for multi-GPU runs


def detect_device(requested: str) -> DeviceCaps:
    if requested == "cpu":
        return DeviceCaps("cpu", "cpu")
    if requested != "cuda":
        raise ValueError(f"spec.device must be 'cpu' or 'cuda', got {requested!r}")
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise RuntimeError(f"the spec asks for a CUDA GPU but torch sees none (CUDA_VISIBLE_DEVICES={visible})")
    return DeviceCaps(
        "cuda",
        torch.cuda.get_device_name(local_rank()),
        bf16=torch.cuda.is_bf16_supported(),
        flash_attention=find_spec("flash_attn") is not None,
        liger=find_spec("liger_kernel") is not None,
    )


def load_tokenizer(source: ModelSource) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(source.source, revision=source.revision)
    if tokenizer.pad_token is None:
        # Batches need a pad id; labels mask padding out, so reusing EOS teaches nothing wrong.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: TrainSpec, resolved: ResolvedTraining, device: DeviceCaps) -> tuple[PreTrainedModel, LoraConfig | None]:
    """The base model on its device, and the LoRA config to wrap it with (None for full fine-tuning)."""
    if spec.training_mode not in ("lora", "qlora", "full"):
        raise ValueError(f"spec.training_mode must be lora, qlora or full, got {spec.training_mode!r}")
    kwargs: dict[str, Any] = {"dtype": getattr(torch, resolved.dtype), "revision": spec.model.revision}
    if device.kind == "cuda":
        kwargs["device_map"] = {"": local_rank()}  # one whole copy per process; quantised weights load in place
    if resolved.attn_implementation:
        kwargs["attn_implementation"] = resolved.attn_implementation
    if spec.training_mode == "qlora":  # trainer.sft refused QLoRA on CPU already
        kwargs["quantization_config"] = quantization_config(spec.bitsandbytes or {})
    model = AutoModelForCausalLM.from_pretrained(spec.model.source, **kwargs)
    if spec.training_mode == "full":
        return model, None
    if spec.training_mode == "qlora":
        # Casts the unquantised layers (norms, embeddings) to float32 and lets gradients reach the
        # adapters through the frozen 4-bit layers, with checkpointing when the run uses it.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=resolved.config["activation_checkpointing"],
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return model, lora_config(spec.lora)


def lora_config(settings: dict[str, Any]) -> LoraConfig:
    unknown = sorted(set(settings) - LORA_SETTINGS)
    if unknown:
        raise ValueError(f"spec.lora has unknown settings: {', '.join(unknown)}")
    values = {"target_modules": "all-linear", **settings, "task_type": "CAUSAL_LM"}
    return LoraConfig(**values)


def quantization_config(settings: dict[str, Any]) -> BitsAndBytesConfig:
    unknown = sorted(set(settings) - BITSANDBYTES_SETTINGS)
    if unknown:
        raise ValueError(f"spec.bitsandbytes has unknown settings: {', '.join(unknown)}")
    values = {key: value for key, value in settings.items() if key != "quant_method"}
    values.setdefault("load_in_4bit", not values.get("load_in_8bit", False))
    return BitsAndBytesConfig(**values)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """Trainable and total parameters; PEFT counts 4-bit weights at their unpacked size."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
