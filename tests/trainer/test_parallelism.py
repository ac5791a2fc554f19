"""The strategy chooser (issue 20): given a model's shape, the GPUs and their free memory, DDP, FSDP2 or a refusal,
with the reasons and both per-GPU peaks. Pure functions of ``trainer.protocol``: no GPU needed."""

from __future__ import annotations

import pytest

from trainer.protocol import ModelShape, choose_strategy, method_levers, method_workload
from trainer.protocol.memory_plan import memory_needed, requested_recipe

GIB = 1024**3
LLAMA_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}
LLAMA_70B = {**LLAMA_8B, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64}
H200_FREE = 139


def shape(config: dict) -> ModelShape:
    found = ModelShape.from_config(config)
    assert found is not None
    return found


def choose(config: dict, free_gib: float, gpus: int = 2, requested: str = "auto", mode: str = "lora", method: str = "sft"):
    work = method_workload(method, mode, rows=8, accumulation=1, max_length=2048, liger=True)
    levers = method_levers(method, mode, "auto", bitsandbytes=False)
    return choose_strategy(shape(config), work, int(free_gib * GIB), gpus, requested, levers, method)


def test_an_8b_lora_that_fits_one_gpu_trains_with_ddp() -> None:
    choice = choose(LLAMA_8B, H200_FREE)
    assert (choice.strategy, choice.fits) == ("ddp", True)
    assert choice.reasons[0].startswith("auto chose DDP: a whole copy fits each GPU with room for the activations")
    assert "DDP ~" in choice.reasons[0] and "FSDP2 over 2 GPUs ~" in choice.reasons[0]  # both per-GPU peaks, said


def test_a_70b_lora_that_no_single_gpu_holds_is_sharded_over_two() -> None:
    choice = choose(LLAMA_70B, H200_FREE)
    assert (choice.strategy, choice.fits, choice.ddp.fits) == ("fsdp2", True, False)
    assert choice.reasons[0].startswith("auto chose FSDP2: a whole copy does not fit one GPU")
    assert "does not fit" in choice.reasons[0]  # DDP's figure is its leanest, marked so
    # The sharded plan holds half the frozen weights per GPU, plus the layers gathered at a time.
    whole = shape(LLAMA_70B).weight_bytes("lora")
    assert whole / 2 < choice.plan.need.weights < whole / 2 + 8 * GIB
    assert choice.plan.need.total <= 0.95 * H200_FREE * GIB


def test_what_fits_neither_way_is_refused_with_both_figures() -> None:
    choice = choose(LLAMA_70B, 40)
    assert not choice.fits
    assert choice.reasons[0].startswith("neither DDP nor FSDP2 fits")
    assert choice.reasons[0].count("does not fit") == 2
    assert choice.plan.advice[-1].startswith("a GPU with ~")  # the sharded plan's advice: the nearer miss


def test_ddp_asked_for_a_model_it_cannot_hold_says_fsdp2_would_fit() -> None:
    choice = choose(LLAMA_70B, H200_FREE, requested="ddp")
    assert (choice.strategy, choice.fits) == ("ddp", False)
    assert choice.reasons[-1].startswith("FSDP2 would fit: ~")


def test_fsdp2_asked_where_ddp_fits_is_kept_and_says_ddp_would_do() -> None:
    choice = choose(LLAMA_8B, H200_FREE, requested="fsdp2")
    assert (choice.strategy, choice.fits) == ("fsdp2", True)
    assert choice.reasons[-1].startswith("DDP would fit too")
    assert choice.plan.need.weights < choice.ddp.need.weights  # each GPU holds less


def test_auto_keeps_ddp_until_its_own_levers_cost_more_than_sharding() -> None:
    # 8B on 40 GiB GPUs: DDP fits only with checkpointing (~1.35x); sharding needs it too, and costs its all-gathers.
    choice = choose(LLAMA_8B, 40)
    assert choice.strategy == "ddp" and choice.ddp.recipe.checkpointing
    assert "sharding would cost more" in choice.reasons[0]


def test_one_gpu_has_nothing_to_shard_over() -> None:
    choice = choose(LLAMA_70B, H200_FREE, gpus=1)
    assert (choice.strategy, choice.fsdp, choice.fits) == ("ddp", None, False)


def test_dpo_and_grpo_keep_ddp_even_where_fsdp2_would_fit() -> None:
    choice = choose(LLAMA_70B, H200_FREE, method="dpo")
    assert (choice.strategy, choice.fits) == ("ddp", False)
    assert "FSDP2 runs sft only" in choice.reasons[0]


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_sharding_splits_the_trained_state_and_a_full_fine_tune_keeps_fp32_masters(mode: str) -> None:
    model = shape(LLAMA_8B)
    work = method_workload("sft", mode, rows=1, accumulation=1, max_length=512)
    recipe = requested_recipe(work, checkpointing=True)
    whole = memory_needed(model, work, recipe)
    halves = memory_needed(model, method_workload("sft", mode, rows=1, accumulation=1, max_length=512, shards=2), recipe)
    assert halves.activations == whole.activations  # the same micro-batch on each GPU
    if mode == "lora":
        assert halves.trained_state == -(-whole.trained_state // 2)
    else:  # fp32 weight, gradient and two moments (16 bytes a parameter) split in two: 8 bytes, as DDP's bf16 in place
        assert halves.trained_state + halves.weights > whole.trained_state + whole.weights - 1 * GIB


def test_qlora_under_fsdp2_counts_the_whole_4bit_model_each_gpu_loads_first() -> None:
    model = shape(LLAMA_70B)
    work = method_workload("sft", "qlora", rows=1, accumulation=1, max_length=512, shards=2)
    need = memory_needed(model, work, requested_recipe(work, checkpointing=True))
    assert need.loading == model.weight_bytes("qlora") and need.total > need.loading
