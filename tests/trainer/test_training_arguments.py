"""Translating a spec's training settings for the device: what CPU runs and GPU runs really get."""

from __future__ import annotations

from dataclasses import fields

import pytest

from ftapp.prompts.config_schemas import BitsAndBytesSettings, LoraSettings, TrainingSettings
from trainer.protocol import qlora_micro_batch_rows
from trainer.training_arguments import GIB, KNOWN_SETTINGS, DeviceCaps, ModelShape, resolve_training

CPU = DeviceCaps("cpu", "cpu")
AMPERE = DeviceCaps("cuda", "NVIDIA A100", bf16=True)
TURING = DeviceCaps("cuda", "Tesla T4", bf16=False)
WITH_FLASH = DeviceCaps("cuda", "NVIDIA H100", bf16=True, flash_attention=True)
HOPPER = DeviceCaps("cuda", "NVIDIA H200", bf16=True, liger=True, flex_attention=True, memory_free_bytes=139 * GIB)
# Llama-3.1-8B's config.json, as trainer.model_loading.read_model_shape reads it.
LLAMA_8B = ModelShape(
    num_parameters=8_030_261_248,
    hidden_size=4096,
    intermediate_size=14336,
    num_layers=32,
    kv_size=1024,
    embedding_parameters=2 * 128256 * 4096,
)
# The seed's preset as ftapp stores it: fp16, paged AdamW, everything "on".
SEED = {
    "fp16": True,
    "bf16": "false",
    "optim": "paged_adamw_32bit",
    "gradient_checkpointing": "true",
    "use_liger_kernel": "true",
    "padding_free": True,
    "torch_compile": True,
    "max_tokens_per_batch": 4096,
    "warmup_ratio": 0.03,
    "max_length": 512,
    "per_device_train_batch_size": 1,
}


def resolve(settings: dict, device: DeviceCaps, mode: str = "lora", has_validation: bool = True, model: ModelShape | None = None):
    return resolve_training(
        settings,
        device,
        training_mode=mode,
        output_dir="/runs/r/checkpoints",
        has_validation=has_validation,
        completion_only_loss=True,
        assistant_only_loss=False,
        model=model,
    )


def test_the_trainer_knows_every_setting_ftapp_can_store() -> None:
    # An unknown key is refused at run time, so a field added to ftapp's schema must be handled here.
    assert {f.name for f in fields(TrainingSettings)} == KNOWN_SETTINGS
    from trainer.model_loading import BITSANDBYTES_SETTINGS, LORA_SETTINGS

    assert {f.name for f in fields(LoraSettings)} == LORA_SETTINGS
    assert {f.name for f in fields(BitsAndBytesSettings)} == BITSANDBYTES_SETTINGS


def test_on_cpu_everything_gpu_only_is_turned_off_and_said_so() -> None:
    resolved = resolve(SEED, CPU)
    config = resolved.config
    assert (config["bf16"], config["fp16"], config["activation_checkpointing"]) == (False, False, False)
    assert (config["use_liger_kernel"], config["torch_compile"], config["optim"]) == (False, False, "adamw_torch")
    assert "padding_free" not in config and config["use_cpu"] is True
    assert resolved.dtype == "float32" and resolved.attn_implementation is None
    notes = " | ".join(resolved.notes)
    for topic in (
        "mixed precision",
        "gradient checkpointing",
        "liger",
        "paged_adamw_32bit",
        "torch_compile",
        "padding-free",
        "max_tokens_per_batch",
    ):
        assert topic in notes


def test_sft_config_defaults_that_fail_on_cpu_are_always_set_explicitly(tmp_path) -> None:
    # SFTConfig turns bf16 and gradient checkpointing on when they are not given.
    from trl import SFTConfig

    config = SFTConfig(**{**resolve({}, CPU).config, "output_dir": str(tmp_path)})
    assert (config.bf16, config.fp16, config.gradient_checkpointing, config.activation_checkpointing) == (False, False, False, False)
    assert config.report_to == []  # "none": no integration callbacks, MLflow included
    assert config.use_cpu and config.disable_tqdm


def test_the_seeds_fp16_becomes_bf16_on_a_gpu_that_has_it() -> None:
    resolved = resolve(SEED, AMPERE)
    assert (resolved.config["bf16"], resolved.config["fp16"], resolved.dtype) == (True, False, "bfloat16")
    assert any("fp16 replaced by bf16" in note for note in resolved.notes)
    assert resolved.config["optim"] == "paged_adamw_32bit"  # bitsandbytes' paged states work on CUDA


@pytest.mark.parametrize(
    ("bf16", "fp16", "device", "mode", "expected"),
    [
        ("auto", False, AMPERE, "lora", (True, False, "bfloat16")),
        ("auto", False, TURING, "lora", (False, False, "float32")),
        ("auto", True, TURING, "lora", (False, True, "float16")),
        ("auto", True, TURING, "full", (False, True, "float32")),  # fp16 AMP needs float32 master weights
        ("true", False, TURING, "lora", (False, True, "float16")),
        ("false", False, AMPERE, "lora", (False, False, "float32")),
        (True, False, AMPERE, "full", (True, False, "bfloat16")),  # JSON booleans, as hand-written configs have them
    ],
)
def test_precision_follows_the_gpu(bf16, fp16, device, mode, expected) -> None:
    resolved = resolve({"bf16": bf16, "fp16": fp16}, device, mode)
    assert (resolved.config["bf16"], resolved.config["fp16"], resolved.dtype) == expected


def test_auto_gradient_checkpointing_is_for_the_memory_hungry_modes() -> None:
    assert resolve({"gradient_checkpointing": "auto"}, AMPERE, "lora").config["activation_checkpointing"] is False
    assert resolve({"gradient_checkpointing": "auto"}, AMPERE, "qlora").config["activation_checkpointing"] is True
    assert resolve({"gradient_checkpointing": "auto"}, AMPERE, "full").config["activation_checkpointing"] is True
    assert resolve({"gradient_checkpointing": "false"}, AMPERE, "full").config["activation_checkpointing"] is False


def test_padding_free_needs_flash_attention_and_then_packs_by_token_budget() -> None:
    without = resolve({"padding_free": True, "max_tokens_per_batch": 8192}, AMPERE)
    assert "padding_free" not in without.config and without.attn_implementation is None
    assert any("SDPA" in note for note in without.notes)
    with_flash = resolve(
        {"padding_free": True, "max_tokens_per_batch": 8192, "per_device_train_batch_size": 2, "max_length": 1024}, WITH_FLASH
    )
    assert with_flash.attn_implementation == "flash_attention_2"
    # The budget is whole packed rows of max_length: examples are still truncated at max_length.
    assert (
        with_flash.config
        | {"packing": True, "packing_strategy": "bfd", "padding_free": True, "max_length": 1024, "per_device_train_batch_size": 8}
        == with_flash.config
    )
    no_budget = resolve({"padding_free": True, "max_length": 1024, "per_device_train_batch_size": 8}, WITH_FLASH)
    assert (no_budget.config["packing"], no_budget.config["max_length"]) == (True, 1024)
    assert no_budget.recipe()["tokens_per_micro_batch"] == 8 * 1024
    small_budget = resolve({"padding_free": True, "max_tokens_per_batch": 512, "max_length": 1024}, WITH_FLASH).config
    assert (small_budget["max_length"], small_budget["per_device_train_batch_size"]) == (512, 1)


def test_qlora_splits_large_micro_batches_keeping_the_rows_per_step() -> None:
    """QLoRA is chosen to be small: padding-free micro-batches over 8,192 tokens become smaller ones, accumulated to the
    same rows per optimizer step (the preflight plans with the same rule, ``qlora_micro_batch_rows``)."""
    settings = {"padding_free": True, "max_length": 1024, "per_device_train_batch_size": 12, "gradient_accumulation_steps": 2}
    qlora = resolve(settings, WITH_FLASH, "qlora").config
    # 8 rows of 1,024 tokens would fit, but 12 rows split evenly only into 6s: 2 micro-batches of 6, accumulated 4x.
    assert (qlora["per_device_train_batch_size"], qlora["gradient_accumulation_steps"]) == (6, 4)
    lora = resolve(settings, WITH_FLASH, "lora").config
    assert (lora["per_device_train_batch_size"], lora["gradient_accumulation_steps"]) == (12, 2)
    assert qlora_micro_batch_rows(8, 1024) == 8 and qlora_micro_batch_rows(1, 100_000) == 1 and qlora_micro_batch_rows(7, 4096) == 1


def test_without_flash_attention_a_cuda_gpu_gets_flex_attention_and_cpu_gets_padded_sdpa() -> None:
    settings = {"padding_free": True, "max_length": 2048, "per_device_train_batch_size": 8}
    flex = resolve(settings, HOPPER)
    assert flex.attn_implementation == "flex_attention"
    assert (flex.config["padding_free"], flex.config["packing_strategy"], flex.config["pad_to_multiple_of"]) == (True, "bfd", 128)
    assert "pad_to_multiple_of" not in resolve(settings, WITH_FLASH).config  # flash-attention needs no fixed shapes
    assert (
        flex.recipe()
        | {
            "attn_implementation": "flex_attention",
            "padding_free": True,
            "tokens_per_micro_batch": 16384,
            "liger": True,
            "optimizer": "adamw_torch",
        }
        == flex.recipe()
    )
    both = resolve(settings, DeviceCaps("cuda", "NVIDIA H100", bf16=True, flash_attention=True, flex_attention=True))
    assert both.attn_implementation == "flash_attention_2"  # flash-attention first when installed
    cpu = resolve(settings, CPU)
    assert cpu.attn_implementation is None and "padding_free" not in cpu.config  # SDPA, padded
    assert resolve({**settings, "padding_free": False}, HOPPER).attn_implementation is None


def test_gradient_checkpointing_auto_turns_on_only_when_the_micro_batch_would_not_fit() -> None:
    settings = {"padding_free": True, "max_length": 2048, "per_device_train_batch_size": 8}
    # An H200: 16 GiB of weights plus ~16k tokens of activations fit in 139 GiB without recomputation.
    assert resolve(settings, HOPPER, model=LLAMA_8B).config["activation_checkpointing"] is False
    small_gpu = DeviceCaps("cuda", "NVIDIA L4", bf16=True, flex_attention=True, memory_free_bytes=22 * GIB)
    tight = resolve(settings, small_gpu, model=LLAMA_8B)
    assert tight.config["activation_checkpointing"] is True
    assert any("gradient checkpointing on" in note for note in tight.notes)
    assert resolve(settings, HOPPER, "qlora", model=LLAMA_8B).config["activation_checkpointing"] is True
    assert resolve({**settings, "gradient_checkpointing": "true"}, HOPPER, model=LLAMA_8B).config["activation_checkpointing"] is True


def test_the_memory_estimate_counts_weights_and_activations() -> None:
    assert 15 * GIB < LLAMA_8B.static_bytes("lora") < 18 * GIB
    assert 5 * GIB < LLAMA_8B.static_bytes("qlora") < 8 * GIB
    without = LLAMA_8B.activation_bytes_per_token(checkpointing=False, liger=True)
    assert 4 * 1024**2 < without < 6 * 1024**2  # ~5 MiB per token for an 8B Llama
    assert LLAMA_8B.activation_bytes_per_token(checkpointing=True, liger=True) < without / 10
    assert LLAMA_8B.activation_bytes_per_token(checkpointing=False, liger=False) > without


def test_torch_compile_means_regional_compilation_on_cuda_only() -> None:
    assert resolve({"torch_compile": True}, HOPPER).compile_blocks is True
    assert resolve({"torch_compile": True}, HOPPER).config["torch_compile"] is False  # not Trainer's whole-model compile
    assert resolve({"torch_compile": True}, CPU).compile_blocks is False


def test_torch_compile_turns_liger_off_as_compiled_layers_cannot_trace_its_kernels() -> None:
    assert resolve({}, HOPPER).config["use_liger_kernel"] is True
    for wanted in ("auto", "true"):
        compiled = resolve({"torch_compile": True, "use_liger_kernel": wanted}, HOPPER)
        assert (compiled.compile_blocks, compiled.config["use_liger_kernel"]) == (True, False)
        assert any(note.startswith("liger kernels off: torch_compile is on") for note in compiled.notes)


def test_warmup_ratio_becomes_a_fractional_warmup_steps_unless_steps_are_given() -> None:
    assert resolve({"warmup_ratio": 0.03, "warmup_steps": 0}, CPU).config["warmup_steps"] == 0.03
    assert resolve({"warmup_ratio": 0.03, "warmup_steps": 10}, CPU).config["warmup_steps"] == 10
    assert resolve({"warmup_ratio": 1.0}, CPU).config["warmup_steps"] < 1  # 1.0 would read as "one step"


def test_without_validation_rows_there_is_no_eval_and_unknown_settings_are_refused() -> None:
    resolved = resolve({"eval_strategy": "steps", "eval_steps": 5}, CPU, has_validation=False)
    assert resolved.config["eval_strategy"] == "no"
    with pytest.raises(ValueError, match="unknown settings: learning_rat"):
        resolve({"learning_rat": 1e-4}, CPU)


def test_new_names_fall_back_to_what_an_older_transformers_accepts():
    from trainer.training_arguments import fit_to_installed

    config = {"activation_checkpointing": True, "warmup_steps": 0.03, "bf16": True}
    assert fit_to_installed(config, {"activation_checkpointing", "warmup_steps", "bf16"}) == config
    older = fit_to_installed(config, {"gradient_checkpointing", "warmup_steps", "warmup_ratio", "bf16"})
    assert older == {"gradient_checkpointing": True, "warmup_steps": 0, "warmup_ratio": 0.03, "bf16": True}
