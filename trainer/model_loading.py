"""The device, tokenizer and model a run trains: LoRA adapters, QLoRA (a 4-bit base) or every parameter.

Models load from a local ``save_pretrained`` directory or a hub id; with ``HF_HUB_OFFLINE=1`` a hub
id resolves from the local cache only (transformers reads the variable itself). LoRA is not applied
here: the ``LoraConfig`` goes to ``SFTTrainer``, which wraps the model after seeding, so adapter
initialisation is reproducible, and which handles QLoRA's adapter dtypes. ``speed_up_adapters`` then
swaps the adapters' forward for a fused one, and ``compile_blocks`` compiles the decoder layers.
"""

from __future__ import annotations

import os
import types
from importlib.util import find_spec
from typing import Any

import torch
from peft import LoraConfig, prepare_model_for_kbit_training
from peft.tuners.lora import LoraLayer
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from trainer.padding_free import VARLEN_ATTENTION
from trainer.protocol import CONTEXT_BYTES, FSDP2, ModelSource, TrainSpec
from trainer.training_arguments import DeviceCaps, ModelShape, ResolvedTraining
from trainer.varlen_attention import is_available as varlen_available
from trainer.varlen_attention import register as register_varlen_attention

LORA_SETTINGS = frozenset(
    {
        "r",
        "lora_alpha",
        "lora_dropout",
        "bias",
        "task_type",
        "target_modules",
        "use_rslora",
        "use_dora",
        "modules_to_save",
    }
)
BITSANDBYTES_SETTINGS = frozenset(
    {
        "load_in_4bit",
        "load_in_8bit",
        "bnb_4bit_quant_type",
        "bnb_4bit_compute_dtype",
        "bnb_4bit_use_double_quant",
        "bnb_4bit_quant_storage",
        "quant_method",
    }
)


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
    rank = local_rank()
    free_bytes, _ = torch.cuda.mem_get_info(rank)
    return DeviceCaps(
        "cuda",
        torch.cuda.get_device_name(rank),
        bf16=torch.cuda.is_bf16_supported(),
        flash_attention=find_spec("flash_attn") is not None,
        liger=find_spec("liger_kernel") is not None and find_spec("triton") is not None,
        # flex_attention's Triton kernels need Ampere or later (and torch >= 2.5, which ships the module).
        flex_attention=find_spec("torch.nn.attention.flex_attention") is not None and torch.cuda.get_device_capability(rank) >= (8, 0),
        varlen_attention=varlen_available() and torch.cuda.get_device_capability(rank) >= (8, 0),
        # The plan counts this process's CUDA context, which mem_get_info has just created: count it as free, as the
        # preflight (nvidia-smi, before the process) does, so both plan with the same memory.
        memory_free_bytes=int(free_bytes) + CONTEXT_BYTES,
        bitsandbytes=find_spec("bitsandbytes") is not None,
    )


def read_model_shape(source: ModelSource) -> ModelShape | None:
    """The model's size and layout from its config.json (no weights read); None when it cannot be read."""
    try:
        config = AutoConfig.from_pretrained(source.source, revision=source.revision).get_text_config()
        hidden, layers = int(config.hidden_size), int(config.num_hidden_layers)
        heads = int(config.num_attention_heads)
        head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
        kv_size = int(getattr(config, "num_key_value_heads", None) or heads) * head_dim
        intermediate = int(getattr(config, "intermediate_size", None) or 4 * hidden)
        vocab = int(config.vocab_size)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    embeddings = vocab * hidden * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    per_layer = hidden * (heads * head_dim) * 2 + hidden * kv_size * 2 + 3 * hidden * intermediate
    return ModelShape(embeddings + layers * per_layer, hidden, intermediate, layers, kv_size, embeddings, vocab, heads * head_dim)


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
    sharded = spec.strategy == FSDP2
    if device.kind == "cuda" and (not sharded or spec.training_mode == "qlora"):
        # One whole copy per process; quantised weights load in place (bitsandbytes quantizes on the GPU, so QLoRA
        # under FSDP2 loads whole too and is sharded after). Other FSDP2 runs load in host memory, on rank 0 only,
        # and accelerate moves each rank's slice to its GPU.
        kwargs["device_map"] = {"": local_rank()}
    if resolved.attn_implementation == VARLEN_ATTENTION:
        register_varlen_attention()
    if resolved.attn_implementation:
        kwargs["attn_implementation"] = resolved.attn_implementation
    if spec.training_mode == "qlora":  # trainer.recipes.sft_process refused QLoRA on CPU already
        settings = dict(spec.bitsandbytes or {})
        if sharded:
            # FSDP2 shards floating-point tensors only: 4-bit weights packed in the compute dtype shard like the rest
            # (accelerate leaves uint8-packed ones whole on every GPU).
            settings["bnb_4bit_quant_storage"] = settings.get("bnb_4bit_compute_dtype") or resolved.dtype
        kwargs["quantization_config"] = quantization_config(settings)
    model = AutoModelForCausalLM.from_pretrained(spec.model.source, **kwargs)
    if spec.training_mode == "full":
        return model, None
    if spec.training_mode == "qlora" and resolved.dtype != "bfloat16":
        # fp16/fp32 runs: norms and embeddings in float32 keep fp16 from overflowing; gradients reach
        # the adapters through the frozen 4-bit layers, with checkpointing when the run uses it.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=resolved.config["activation_checkpointing"],
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif spec.training_mode == "qlora":
        # In bf16 the float32 copies would only cost memory and bandwidth (4 GiB more for an 8B
        # model's embeddings and head, a float32 residual stream): freeze, keep the dtypes. TRL
        # turns on checkpointing and input gradients from the config.
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    return model, lora_config(spec.lora)


def speed_up_adapters(model: torch.nn.Module) -> int:
    """Give plain LoRA layers a fused forward; returns how many were changed.

    PEFT computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling`` and, with float32 adapters on a
    bf16 model, first copies ``x`` to float32, which autocast copies straight back to bf16. The fused
    forward is ``addmm(base(x), lora_A(x), scaling * lora_B.weight.T)``: one matmul writes the sum,
    with no casts of ``x``, no scaled copy and no separate addition, forward or backward. Layers with
    dropout, DoRA or other variants, and calls PEFT handles specially (several or disabled adapters,
    merged weights, ``adapter_names``), keep PEFT's own forward.
    """
    changed = 0
    for module in model.modules():
        if not isinstance(module, LoraLayer) or not isinstance(module.base_layer, torch.nn.Module):
            continue
        names = list(module.lora_A.keys())
        plain = (
            len(names) == 1
            and isinstance(module.lora_A[names[0]], torch.nn.Linear)
            and isinstance(module.lora_dropout[names[0]], torch.nn.Identity)
            and not module.use_dora.get(names[0], False)
            and not getattr(module, "lora_variant", {})
            and module.lora_A[names[0]].bias is None
            and module.lora_B[names[0]].bias is None
        )
        if plain:
            module.forward = types.MethodType(_fused_lora_forward, module)
            changed += 1
    return changed


def _fused_lora_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    name = self.active_adapters[0] if len(self.active_adapters) == 1 else None
    lora_a = self.lora_A[name] if name in self.lora_A else None
    autocast = torch.is_autocast_enabled(x.device.type)
    if args or kwargs or self.disable_adapters or self.merged or lora_a is None or not (autocast or x.dtype == lora_a.weight.dtype):
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    hidden = torch.nn.functional.linear(x, lora_a.weight)
    scaled_b = (self.lora_B[name].weight * self.scaling[name]).t()
    out = torch.addmm(result.reshape(-1, result.shape[-1]), hidden.reshape(-1, hidden.shape[-1]), scaled_b)
    return out.view(result.shape)


def compile_blocks(model: torch.nn.Module) -> int:
    """Regional compilation: ``torch.compile`` each repeated decoder layer (one compilation serves
    them all, shapes dynamic so packed micro-batches of any length reuse it); returns the count."""
    unwrapped = model.get_base_model() if hasattr(model, "get_base_model") else model
    block_names = set(getattr(unwrapped, "_no_split_modules", None) or ())
    blocks = [module for module in unwrapped.modules() if type(module).__name__ in block_names]
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)


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
