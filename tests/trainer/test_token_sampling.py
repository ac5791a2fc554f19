"""The sampler's token draw (``trainer.inference.token_sampling``): the distribution it draws from, its filters, and
the end-of-sequence block of ``min_new_tokens``."""

from __future__ import annotations

import pytest
import torch

from trainer.inference.token_sampling import Sampling, sample_tokens

EOS = torch.tensor([3])


def test_sampling_draws_from_the_softmax_and_its_filters() -> None:
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1, 1e-9]])).repeat(20000, 1)
    torch.manual_seed(1)
    counts = torch.bincount(sample_tokens(logits, Sampling(temperature=1.0), EOS), minlength=4).float() / len(logits)
    assert counts[:3].tolist() == pytest.approx([0.6, 0.3, 0.1], abs=0.02)
    assert set(sample_tokens(logits, Sampling(temperature=1.0, top_k=2), EOS).tolist()) == {0, 1}
    assert set(sample_tokens(logits, Sampling(temperature=1.0, top_p=0.5), EOS).tolist()) == {0}  # 0.6 alone crosses 0.5
    assert set(sample_tokens(logits, Sampling(temperature=0.0), EOS).tolist()) == {0}  # greedy


def test_an_end_of_sequence_token_is_never_drawn_while_blocked() -> None:
    logits = torch.log(torch.tensor([[0.05, 0.05, 0.0, 0.9]])).repeat(2000, 1)  # EOS (3) is by far the likeliest
    greedy, sampled = Sampling(temperature=0.0), Sampling(temperature=1.0)
    blocked, free = torch.tensor(True), torch.tensor(False)
    assert set(sample_tokens(logits, greedy, EOS, blocked).tolist()) <= {0, 1}
    assert 3 not in sample_tokens(logits, sampled, EOS, blocked).tolist()
    assert set(sample_tokens(logits, greedy, EOS, free).tolist()) == {3}


def test_the_callers_logits_are_left_as_they_were() -> None:
    """A float32 model's logits went through ``.float()`` as the same tensor, and blocking the end of sequence wrote
    -inf into them: the prefill's logits, which then scored the reference answer's first token without EOS's mass."""
    logits = torch.log(torch.tensor([[0.05, 0.05, 0.0, 0.9]]))
    before = logits.clone()
    sample_tokens(logits, Sampling(temperature=0.0), EOS, torch.tensor([True]))
    assert torch.equal(logits, before)
