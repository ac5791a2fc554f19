"""The sampler's prefill attends without cuDNN's kernel (a plan for every new shape); its decode steps keep it."""

from __future__ import annotations

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from tests.trainer.tiny_llama import tiny_llama
from trainer.inference.graphed_sampler import GraphedSampler
from trainer.inference.token_sampling import Sampling


def test_prefill_calls_leave_cudnn_out_and_decode_steps_keep_it(monkeypatch) -> None:
    model = tiny_llama()
    seen: list[tuple[int, bool]] = []

    def recorded(module, query, *args, **kwargs):
        seen.append((query.shape[2], torch.backends.cuda.cudnn_sdp_enabled()))
        return sdpa_attention_forward(module, query, *args, **kwargs)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", recorded)
    assert torch.backends.cuda.cudnn_sdp_enabled()
    sampler = GraphedSampler(model, eos_token_ids=[2], pad_token_id=0, sampling=Sampling(temperature=0.0))
    sampler.answer([[5, 6, 7, 8, 9], [10, 11]], [[3, 4], [12]], 4, min_new_tokens=4)
    prefill = [cudnn for queries, cudnn in seen if queries > 1]
    decode = [cudnn for queries, cudnn in seen if queries == 1]
    assert len(prefill) == model.config.num_hidden_layers and not any(prefill)
    assert len(decode) == 3 * model.config.num_hidden_layers and all(decode)  # the first token comes from the prefill
    assert torch.backends.cuda.cudnn_sdp_enabled()
