"""Batched generation and scoring on the tiny demo model: padding and mixed adapters change nothing."""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")


@pytest.fixture(scope="module")
def loaded(demo_kit, random_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer.model_loading import load_tokenizer
    from trainer.protocol import ModelSource

    torch.manual_seed(0)
    tokenizer = load_tokenizer(ModelSource(str(demo_kit.model_dir)))
    model = AutoModelForCausalLM.from_pretrained(demo_kit.model_dir)
    model = PeftModel.from_pretrained(model, str(random_adapter(1, scale=0.3)), adapter_name="one")
    model.load_adapter(str(random_adapter(2, scale=0.3)), adapter_name="two")
    return model.eval(), tokenizer


PROMPTS = ["### Request:\nWhere is my parcel?\n### Intent:", "### Request:\nPlay some jazz please, I would love it\n### Intent:"]


def test_a_mixed_adapter_batch_answers_like_each_adapter_alone(loaded):
    from trainer.inference.generation import BASE_ADAPTER, encode_prompt, generate_batch, generation_config

    model, tokenizer = loaded
    config = generation_config(model, tokenizer, {"max_new_tokens": 6, "do_sample": False})
    ids = [encode_prompt(tokenizer, p) for p in PROMPTS]
    names = [BASE_ADAPTER, "one", "two"]
    mixed = generate_batch(model, tokenizer, [i for _ in names for i in ids], config, [n for n in names for _ in ids])
    alone = []
    for name in names:
        if name == BASE_ADAPTER:
            with model.disable_adapter():
                alone += [generate_batch(model, tokenizer, [i], config).texts[0] for i in ids]
        else:
            model.set_adapter(name)
            alone += [generate_batch(model, tokenizer, [i], config).texts[0] for i in ids]
    assert mixed.texts == alone
    assert len(set(mixed.texts)) > 2, "the adapters should answer differently from the base"
    assert all(0 < n <= 6 for n in mixed.new_tokens)


def test_answer_log_likelihood_ignores_left_padding(loaded):
    from trainer.inference.generation import answer_log_likelihood, encode_answer, encode_prompt

    model, tokenizer = loaded
    ids = [encode_prompt(tokenizer, p) for p in PROMPTS]
    answers = [encode_answer(tokenizer, p, i, " track_order") for p, i in zip(PROMPTS, ids)]
    assert answers[0][-1] == tokenizer.eos_token_id
    batched = answer_log_likelihood(model, ids, answers, tokenizer.pad_token_id, ["one", "one"])
    model.set_adapter("one")
    for prompt_ids, answer_ids, (total, count) in zip(ids, answers, batched):
        full = torch.tensor([prompt_ids + answer_ids])
        logits = model(input_ids=full).logits.float().log_softmax(-1)[0]
        expected = sum(logits[len(prompt_ids) + j - 1, token].item() for j, token in enumerate(answer_ids))
        assert count == len(answer_ids)
        assert total == pytest.approx(expected, abs=1e-3)
