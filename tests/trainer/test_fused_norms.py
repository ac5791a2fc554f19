"""The sampler's RMSNorms through ``F.rms_norm`` (PyTorch's fused kernel on CUDA): Llama-family norms only, the same
numbers within rounding, switched back afterwards, and used by the sampler where the kernel exists."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from transformers.models.mistral.modeling_mistral import MistralRMSNorm
from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

from tests.trainer.tiny_llama import tiny_llama
from trainer.inference import fused_norms
from trainer.inference.graphed_sampler import GraphedSampler
from trainer.inference.token_sampling import Sampling


def llama_with_varied_norms() -> LlamaForCausalLM:
    """Norm weights other than ones, so that a norm that ignored them would show."""
    model = tiny_llama()
    for module in model.modules():
        if isinstance(module, LlamaRMSNorm):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    return model


def count_rms_norm(monkeypatch) -> list[int]:
    """A list that grows by one with every ``F.rms_norm`` call."""
    calls: list[int] = []
    original = F.rms_norm
    monkeypatch.setattr(F, "rms_norm", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    return calls


def test_llama_family_norms_qualify_and_other_formulas_do_not() -> None:
    for norm in (LlamaRMSNorm(8), Qwen2RMSNorm(8), MistralRMSNorm(8)):
        assert fused_norms.is_llama_norm(norm)
    assert not fused_norms.is_llama_norm(GemmaRMSNorm(8))  # scales by 1 + weight
    assert not fused_norms.is_llama_norm(torch.nn.LayerNorm(8))
    assert not fused_norms.is_llama_norm(torch.nn.RMSNorm(8))


def test_swapped_norms_give_the_same_logits_and_are_switched_back(monkeypatch) -> None:
    model = llama_with_varied_norms()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    expected = model(ids).logits
    calls = count_rms_norm(monkeypatch)
    with fused_norms.swapped_norms(model) as count:
        fused = model(ids).logits
    assert count == 2 * 2 + 1  # two per layer and the final one
    assert len(calls) == count
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)
    assert not any("forward" in vars(module) for module in model.modules())
    calls.clear()
    model(ids)
    assert not calls


def test_in_bf16_they_differ_by_rounding_only() -> None:
    norm = LlamaRMSNorm(256, eps=1e-5).to(torch.bfloat16)
    torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
    hidden = torch.randn(64, 256).to(torch.bfloat16) * 3
    expected = norm(hidden)
    fused = fused_norms.fused_forward(norm, hidden)
    assert fused.dtype == expected.dtype == torch.bfloat16
    # transformers rounds twice (normalised value, then times the weight), the fused kernel once: one bf16 step apart.
    torch.testing.assert_close(fused.float(), expected.float(), atol=0, rtol=2**-7)


def test_a_norm_whose_weight_has_another_dtype_keeps_its_own_forward() -> None:
    norm = LlamaRMSNorm(16)  # float32 weight
    hidden = torch.randn(3, 16).to(torch.bfloat16)
    out = fused_norms.fused_forward(norm, hidden)
    assert out.dtype == torch.float32  # transformers' promotion, as without the swap
    assert torch.equal(out, norm(hidden))


def test_the_sampler_samples_with_fused_norms_where_the_kernel_exists(monkeypatch) -> None:
    model = llama_with_varied_norms()
    prompts = [[5, 6, 7, 8, 9], [10, 11]]
    references = []
    for prompt in prompts:
        reference = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False, eos_token_id=2, pad_token_id=0)
        tokens = reference[0, len(prompt) :].tolist()
        references.append(tokens[: tokens.index(2) + 1] if 2 in tokens else tokens)
    assert not fused_norms.fused_kernel_on(torch.device("cpu"))  # the CPU has no fused kernel: left as it is
    calls = count_rms_norm(monkeypatch)
    sampler = GraphedSampler(model, eos_token_ids=[2], pad_token_id=0, sampling=Sampling(temperature=0.0))
    assert sampler.generate(prompts, 6) == references
    assert not calls
    monkeypatch.setattr(fused_norms, "fused_kernel_on", lambda device: True)  # the CPU stands in for a CUDA GPU here
    assert sampler.generate(prompts, 6) == references
    assert calls  # prefill and decode steps
    assert not any("forward" in vars(module) for module in model.modules())
