"""The model side of the speed recipe: the memory estimate's inputs and the fused LoRA forward."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from trainer.model_loading import read_model_shape, speed_up_adapters
from trainer.protocol import ModelSource


def tiny_llama(tie: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
        tie_word_embeddings=tie,
    )
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("tie", [False, True])
def test_the_model_shape_comes_from_config_json_and_counts_every_parameter(tmp_path, tie) -> None:
    model = tiny_llama(tie)
    model.config.save_pretrained(tmp_path)
    shape = read_model_shape(ModelSource(str(tmp_path)))
    assert shape is not None
    norms = sum(p.numel() for n, p in model.named_parameters() if "norm" in n)
    assert shape.num_parameters == sum(p.numel() for p in model.parameters()) - norms
    assert (shape.hidden_size, shape.intermediate_size, shape.num_layers, shape.kv_size) == (32, 64, 2, 16)
    assert shape.embedding_parameters == 100 * 32 * (1 if tie else 2)
    assert read_model_shape(ModelSource(str(tmp_path / "missing"))) is None


def lora_pair(**lora) -> tuple[torch.nn.Module, torch.nn.Module]:
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM", **lora)
    peft = get_peft_model(tiny_llama(), config)
    for name, parameter in peft.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero, which would hide a wrong adapter path
            torch.nn.init.normal_(parameter, std=0.1)
    return peft, copy.deepcopy(peft)


def test_the_fused_adapter_forward_computes_what_peft_computes_with_the_same_gradients() -> None:
    reference, fused = lora_pair()
    assert speed_up_adapters(fused) == 14  # q, k, v, o, gate, up, down in both layers
    ids = torch.randint(0, 100, (2, 7))
    expected, got = reference(input_ids=ids).logits, fused(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    expected.square().mean().backward()
    got.square().mean().backward()
    grads = {n: p.grad for n, p in reference.named_parameters() if p.requires_grad}
    for name, parameter in fused.named_parameters():
        if parameter.requires_grad:
            torch.testing.assert_close(parameter.grad, grads[name], rtol=1e-4, atol=1e-6)
    with fused.disable_adapter(), reference.disable_adapter():  # PEFT's own forward handles what the fused one does not
        torch.testing.assert_close(fused(input_ids=ids).logits, reference(input_ids=ids).logits)
        assert not torch.allclose(fused(input_ids=ids).logits, expected)


def test_layers_with_dropout_or_dora_keep_pefts_forward() -> None:
    assert speed_up_adapters(lora_pair(lora_dropout=0.1)[0]) == 0
    assert speed_up_adapters(lora_pair(use_dora=True)[0]) == 0
