"""The sampler's decode-step attention: SDPA's grouped-query attention over the masked cache, the same numbers as
transformers' own SDPA path, used for one-token steps only and switched back after them."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from tests.trainer.tiny_llama import tiny_llama
from trainer.inference import decode_attention
from trainer.inference.decode_attention import DECODE_ATTENTION, decode_sdpa_attention
from trainer.inference.graphed_sampler import GraphedSampler
from trainer.inference.token_sampling import Sampling


class Heads(torch.nn.Module):
    num_key_value_groups = 3


@pytest.mark.parametrize("queries", [1, 5])
def test_it_answers_as_transformers_sdpa_does_with_grouped_heads_and_a_mask(queries: int) -> None:
    torch.manual_seed(0)
    rows, kv_heads, slots, dim = 4, 2, 9, 8
    query = torch.randn(rows, kv_heads * 3, queries, dim)
    key, value = torch.randn(rows, kv_heads, slots, dim), torch.randn(rows, kv_heads, slots, dim)
    mask = torch.rand(rows, 1, queries, slots) < 0.6
    mask[..., 0] = True  # every query sees one slot at least
    module = Heads().eval()
    ours, _ = decode_sdpa_attention(module, query, key, value, mask, scaling=dim**-0.5)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=dim**-0.5)
    assert ours.shape == theirs.shape == (rows, queries, kv_heads * 3, dim)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_the_sampler_attends_with_it_in_decode_steps_only_and_switches_back(monkeypatch) -> None:
    model = tiny_llama()
    assert model.config._attn_implementation == "sdpa"
    queries: list[int] = []

    def counted(module, query, *args, **kwargs):
        queries.append(query.shape[2])
        return decode_sdpa_attention(module, query, *args, **kwargs)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, DECODE_ATTENTION, counted)
    monkeypatch.setattr(decode_attention, "measured_on", lambda device: True)  # the CPU stands in for an H200 here
    prompts = [[5, 6, 7, 8, 9], [10, 11]]
    sampler = GraphedSampler(model, eos_token_ids=[2], pad_token_id=0, sampling=Sampling(temperature=0.0))
    completions = sampler.generate(prompts, 6)
    assert queries and set(queries) == {1}  # one token a step, every layer; the prefill kept transformers' SDPA
    assert len(queries) % model.config.num_hidden_layers == 0
    assert model.config._attn_implementation == "sdpa"
    for prompt, completion in zip(prompts, completions):  # greedy: transformers' own generate, cut after end of sequence
        reference = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False, eos_token_id=2, pad_token_id=0)
        tokens = reference[0, len(prompt) :].tolist()
        assert completion == (tokens[: tokens.index(2) + 1] if 2 in tokens else tokens)


def test_other_gpus_and_older_torch_keep_transformers_attention(monkeypatch) -> None:
    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2))
    cuda = torch.device("cuda", 0)
    assert not decode_attention.measured_on(torch.device("cpu"))
    for capability, version, used in [
        ((9, 0), (2, 11), True),
        ((9, 0), (2, 10), False),
        ((8, 9), (2, 13), False),
        ((10, 0), (2, 13), False),
    ]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, capability=capability: capability)
        monkeypatch.setattr(decode_attention, "_torch_version", lambda version=version: version)
        assert decode_attention.measured_on(cuda) is used
        with decode_attention.decode_attention(model, cuda):
            assert model.config._attn_implementation == (DECODE_ATTENTION if used else "sdpa")
        assert model.config._attn_implementation == "sdpa"
