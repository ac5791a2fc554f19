"""GRPO's graphed sampler (issue 19) on the CPU: the decode step it captures on a GPU runs eagerly here, so its
prefill, left padding, masks, positions and static cache are checked against transformers' own ``generate``."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from tests.trainer.tiny_llama import EOS, tiny_llama
from trainer.inference.graphed_sampler import GraphedSampler
from trainer.inference.token_sampling import Sampling


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    return tiny_llama(max_position_embeddings=256)


def reference(model: LlamaForCausalLM, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Greedy ``generate`` on one unpadded prompt, cut after the first end-of-sequence token."""
    out = model.generate(torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=EOS, pad_token_id=0)[
        0, len(prompt) :
    ].tolist()
    return out[: out.index(EOS) + 1] if EOS in out else out


def test_greedy_completions_match_generate_whatever_the_padding(model) -> None:
    prompts = [[5, 9, 11, 3, 7, 8, 21], [4], [30, 31, 32, 33]]
    sampler = GraphedSampler(model, eos_token_ids=[EOS], pad_token_id=0, sampling=Sampling(temperature=0.0))
    completions = sampler.generate(prompts, max_new_tokens=12)
    assert completions == [reference(model, p, 12) for p in prompts]
    # The same shape again reuses the decode buffers and cache: the answer must not depend on the last call.
    assert sampler.generate(prompts, max_new_tokens=12) == completions
    assert len(sampler._shapes) == 1


def test_completions_end_after_their_first_end_of_sequence_token(model) -> None:
    prompts = [[5, 9, 11, 3], [4, 4]]
    free = [reference(model, p, 10) for p in prompts]
    stop = free[0][2]  # a token the first completion reaches at its third step: call it the end of sequence
    sampler = GraphedSampler(model, eos_token_ids=[EOS, stop], pad_token_id=0, sampling=Sampling(temperature=0.0))
    completions = sampler.generate(prompts, max_new_tokens=10)
    for completion, unstopped in zip(completions, free):
        cut = next((i for i, t in enumerate(unstopped) if t in (EOS, stop)), None)
        assert completion == (unstopped if cut is None else unstopped[: cut + 1])
    assert completions[0][-1] == stop and len(completions[0]) <= 3


def test_lora_adapters_sample_the_same_folded_into_a_weight_copy_as_run_by_peft(model) -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    peft_model = get_peft_model(
        LlamaForCausalLM(model.config), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    ).eval()
    base = peft_model.get_base_model()
    before = {name: p.clone() for name, p in base.named_parameters()}
    prompts = [[5, 9, 11, 3, 7], [4, 40]]
    merged = GraphedSampler(base, eos_token_ids=[EOS], pad_token_id=0, sampling=Sampling(temperature=0.0))
    unmerged = GraphedSampler(base, eos_token_ids=[EOS], pad_token_id=0, sampling=Sampling(temperature=0.0), merge_adapters=False)
    assert merged.merged is not None and unmerged.merged is None
    expected = [reference(peft_model, p, 10) for p in prompts]
    assert merged.generate(prompts, 10) == expected == unmerged.generate(prompts, 10)
    # Sampling leaves the model as it was: the same weights, and PEFT's own forward back on every adapted layer.
    assert all(torch.equal(before[name], p) for name, p in base.named_parameters())
    assert all("forward" not in layer.__dict__ for layer in merged.merged.layers)


def test_answers_are_scored_in_the_prefill_of_rows_prefilled_in_parts_by_length(model, monkeypatch) -> None:
    """Evaluation's ``answer``: each answer's teacher-forced log-likelihood from the prefill, completions unchanged."""
    import random

    from trainer.inference import graphed_sampler

    monkeypatch.setattr(graphed_sampler, "PREFILL_TOKENS", 60)  # parts of a few rows, each padded to its own longest
    rng = random.Random(0)
    prompts = [[rng.randint(3, 63) for _ in range(rng.randint(1, 40))] for _ in range(9)]
    answers = [[rng.randint(3, 63) for _ in range(rng.randint(0, 6))] for _ in range(9)]
    assert len(graphed_sampler._parts(sorted(prompts, key=len, reverse=True), None)) > 3
    sampler = GraphedSampler(model, eos_token_ids=[EOS], pad_token_id=0, sampling=Sampling(temperature=0.0))
    answered = sampler.answer(prompts, answers, 12)
    assert answered.completions == [reference(model, p, 12) for p in prompts]
    for prompt, answer, likelihood in zip(prompts, answers, answered.log_likelihoods):
        log_probs = model(input_ids=torch.tensor([prompt + answer])).logits.float().log_softmax(-1)[0]
        expected = sum(log_probs[len(prompt) + j - 1, token].item() for j, token in enumerate(answer))
        assert likelihood == pytest.approx(expected, abs=1e-4)


def test_min_new_tokens_hold_the_end_of_sequence_back(model) -> None:
    prompts = [[5, 9, 11, 3], [4, 4], [30, 31]]
    stop = reference(model, prompts[0], 10)[1]  # a token the first completion reaches at its second step: an end of sequence
    sampler = GraphedSampler(model, eos_token_ids=[EOS, stop], pad_token_id=0, sampling=Sampling(temperature=0.0))
    completions = sampler.generate(prompts, 10, min_new_tokens=4)
    expected = [
        model.generate(torch.tensor([p]), max_new_tokens=10, min_new_tokens=4, do_sample=False, eos_token_id=[EOS, stop], pad_token_id=0)[
            0, len(p) :
        ].tolist()
        for p in prompts
    ]
    assert completions == [next((e[: i + 1] for i, t in enumerate(e) if t in (EOS, stop)), e) for e in expected]
    assert all(EOS not in c[:4] and stop not in c[:4] for c in completions) and len(completions[0]) >= 4


def test_decoding_starts_from_the_prefilled_state_after_a_capture_moved_it_on(model) -> None:
    """On a GPU a new shape is captured after its prefill: the warm-up steps write tokens and advance the cache, and
    the prefilled state is restored before decoding (here the capture's steps run eagerly)."""
    prompts, answers = [[5, 9, 11, 3, 7, 8, 21], [4], [30, 31, 32, 33]], [[6, 7], [8], []]
    sampler = GraphedSampler(model, eos_token_ids=[EOS], pad_token_id=0, sampling=Sampling(temperature=0.0))
    plain = sampler.answer(prompts, answers, 12)
    captured = GraphedSampler(model, eos_token_ids=[EOS], pad_token_id=0, sampling=Sampling(temperature=0.0))
    captured.use_graphs = True
    steps: list[int] = []
    captured._capture = lambda state: steps.extend(captured._step(state) or 1 for _ in range(3))
    assert captured.answer(prompts, answers, 12) == plain and len(steps) == 3


def test_the_prefill_gives_the_lm_head_its_kept_columns_in_one_contiguous_block(model) -> None:
    """A strided view of the kept columns, which torch.matmul does not fold, ran the LM head as a batched matmul."""
    seen: list[tuple[tuple[int, ...], bool]] = []
    hook = model.lm_head.register_forward_pre_hook(lambda _, inputs: seen.append((tuple(inputs[0].shape), inputs[0].is_contiguous())))
    try:
        sampler = GraphedSampler(model, eos_token_ids=[EOS], pad_token_id=0, sampling=Sampling(temperature=0.0))
        answered = sampler.answer([[5, 6, 7, 8], [9, 10], [11, 12, 13]], [[3, 4], [5], [6, 7, 8]], 4)
    finally:
        hook.remove()
    prefill = [(shape, contiguous) for shape, contiguous in seen if shape[1] > 1]
    assert prefill and all(contiguous for _, contiguous in prefill), seen
    assert prefill[0][0][:2] == (3, 4)  # three rows, the longest answer's three tokens and the first generated one
    assert len(answered.completions) == 3
