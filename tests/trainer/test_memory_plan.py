"""The memory plan (issue 19): given a model, a recipe and the GPU's free memory, the fastest recipe that fits, what it
changed and why; refused only when nothing fits, with what would. CPU only: every GPU decision is a pure function."""

from __future__ import annotations

import pytest

from trainer.protocol import ModelShape, method_levers, method_workload, plan_fit
from trainer.protocol.memory_plan import USABLE_FRACTION, memory_needed
from trainer.training_arguments import DeviceCaps, MethodLoad, resolve_training

GIB = 1024**3
LLAMA_8B = ModelShape.from_config(
    {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
    }
)
LLAMA_1B = ModelShape.from_config(
    {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
    }
)


def plan(
    shape: ModelShape,
    free_gib: float,
    *,
    mode: str = "lora",
    method: str = "sft",
    rows: int = 8,
    accumulation: int = 1,
    max_length: int = 2048,
    checkpointing: str = "auto",
    bitsandbytes: bool = False,
    **extra,
):
    work = method_workload(method, mode, rows=rows, accumulation=accumulation, max_length=max_length, liger=True, **extra)
    return plan_fit(shape, work, int(free_gib * GIB), method_levers(method, mode, checkpointing, bitsandbytes=bitsandbytes))


def test_the_shapes_read_from_config_json_are_the_real_models() -> None:
    assert LLAMA_8B.num_parameters == pytest.approx(8.03e9, rel=0.01)
    assert LLAMA_1B.num_parameters == pytest.approx(1.24e9, rel=0.01)
    assert LLAMA_8B.lora_parameters(16) == pytest.approx(41.9e6, rel=0.01)  # PEFT's count for r=16 on all linear layers
    assert ModelShape.from_config({"hidden_size": 64}) is None


def test_a_run_that_fits_is_left_as_it_was_asked() -> None:
    fitted = plan(LLAMA_8B, 139)
    assert fitted.fits and fitted.changes == () and fitted.slowdown == 1.0
    assert (fitted.recipe.rows, fitted.recipe.accumulation, fitted.recipe.checkpointing) == (8, 1, False)


def test_8b_lora_on_24_gib_fits_instead_of_being_refused_with_the_same_rows_per_step() -> None:
    fitted = plan(LLAMA_8B, 24)
    assert fitted.fits and fitted.need.total <= USABLE_FRACTION * 24 * GIB
    assert fitted.recipe.rows * fitted.recipe.accumulation == 8  # the optimizer sees the same batch
    assert fitted.recipe.checkpointing  # 15 GiB of weights leave too little for one row's activations
    assert any("gradient checkpointing on" in change for change in fitted.changes)
    assert any("24.0 GiB is free" in change for change in fitted.changes)


def test_1b_lora_on_24_gib_prefers_smaller_micro_batches_to_recomputation() -> None:
    # Halving the micro-batch costs a few percent; checkpointing costs ~50%: the plan takes the faster way.
    fitted = plan(LLAMA_1B, 24)
    assert fitted.fits and not fitted.recipe.checkpointing
    assert fitted.recipe.rows < 8 and fitted.recipe.rows * fitted.recipe.accumulation == 8
    assert fitted.slowdown < 1.2
    assert plan(LLAMA_1B, 48).changes == ()


def test_an_explicit_checkpointing_setting_is_kept() -> None:
    off = plan(LLAMA_8B, 24, checkpointing="false")
    assert not off.recipe.checkpointing
    on = plan(LLAMA_8B, 139, checkpointing="true")
    assert on.recipe.checkpointing and on.changes == ()
    assert plan(LLAMA_8B, 139, mode="qlora").recipe.checkpointing  # QLoRA's "auto" keeps its small footprint


def test_full_fine_tuning_takes_8_bit_optimizer_states_when_bitsandbytes_is_there() -> None:
    with_bnb = plan(LLAMA_8B, 80, mode="full", bitsandbytes=True)
    assert with_bnb.fits and with_bnb.recipe.optimizer_8bit
    assert any("8-bit AdamW" in change for change in with_bnb.changes)
    without = plan(LLAMA_8B, 80, mode="full")
    assert not without.recipe.optimizer_8bit


def test_what_fits_no_way_is_refused_with_what_would() -> None:
    full = plan(LLAMA_8B, 24, mode="full", bitsandbytes=True)
    assert not full.fits
    assert any(a.startswith("QLoRA (training_mode 'qlora') would fit") for a in full.advice)
    assert any("a GPU with ~" in a for a in full.advice)
    long = plan(LLAMA_8B, 24, max_length=32768)
    assert not long.fits and any("a max_length of 8,192 tokens (instead of 32,768)" in a for a in long.advice)


def test_dpo_counts_both_sequences_and_grpo_its_generation_cache() -> None:
    sft, dpo = plan(LLAMA_1B, 139, max_length=1024), plan(LLAMA_1B, 139, method="dpo", max_length=1024)
    assert dpo.need.activations == 2 * sft.need.activations
    grpo = plan(LLAMA_1B, 139, method="grpo", rows=64, max_length=1024, prompt_tokens=40, completion_tokens=64)
    assert grpo.need.generation == 64 * (40 + 64) * 16 * 512 * 4  # tokens x layers x kv units x (k, v) x bf16
    tight = plan(LLAMA_1B, 16, method="grpo", rows=64, max_length=1024, prompt_tokens=1024, completion_tokens=512)
    assert tight.recipe.rows * tight.recipe.accumulation == 64  # whole groups of completions per step, as asked


def test_the_trainer_chooses_what_the_preflight_predicts() -> None:
    """``trainer.training_arguments`` and ftapp's preflight call the same plan: the trainer's config is the plan's recipe."""
    predicted = plan(LLAMA_8B, 24, max_length=2048)
    device = DeviceCaps("cuda", "NVIDIA GeForce RTX 4090", bf16=True, liger=True, varlen_attention=True, memory_free_bytes=24 * GIB)
    resolved = resolve_training(
        {"padding_free": True, "max_length": 2048, "per_device_train_batch_size": 8},
        device,
        training_mode="lora",
        output_dir="/runs/r/checkpoints",
        has_validation=False,
        completion_only_loss=True,
        assistant_only_loss=False,
        model=LLAMA_8B,
        load=MethodLoad("sft"),
    )
    config = resolved.config
    assert (config["per_device_train_batch_size"], config["gradient_accumulation_steps"], config["activation_checkpointing"]) == (
        predicted.recipe.rows,
        predicted.recipe.accumulation,
        predicted.recipe.checkpointing,
    )
    assert resolved.memory_plan == predicted
    assert set(predicted.changes) <= set(resolved.notes)
    assert resolved.recipe()["planned_peak_gib"] == pytest.approx(predicted.need.total / GIB, abs=0.01)


def test_a_run_the_trainer_finds_too_big_runs_as_asked_with_the_advice_in_its_notes() -> None:
    device = DeviceCaps("cuda", "NVIDIA L4", bf16=True, memory_free_bytes=20 * GIB)
    resolved = resolve_training(
        {"max_length": 2048, "per_device_train_batch_size": 8},
        device,
        training_mode="full",
        output_dir="/runs/r/checkpoints",
        has_validation=False,
        completion_only_loss=True,
        assistant_only_loss=False,
        model=LLAMA_8B,
    )
    assert resolved.memory_plan is not None and not resolved.memory_plan.fits
    assert any("does not fit" in note and "QLoRA" in note for note in resolved.notes)


def test_activations_shrink_with_checkpointing_and_again_with_offloading() -> None:
    work = method_workload("sft", "lora", rows=8, accumulation=1, max_length=2048, liger=True)
    from trainer.protocol import Recipe

    plain, recompute, offload = (
        memory_needed(LLAMA_8B, work, Recipe(8, 1, checkpointing=c, offload=o)).activations
        for c, o in ((False, False), (True, False), (True, True))
    )
    assert offload < recompute < plain / 10
