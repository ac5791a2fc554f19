"""The lm-eval model over ftapp's multi-adapter engine answers exactly as lm-eval's own model does, adapter by adapter.

The reference is lm-evaluation-harness's ``HFLM`` on a model carrying one adapter, one request at a time; ours answers
every adapter at once in mixed-adapter batches. Same log-likelihoods (float32 tolerance), same greedy flags, same
generations.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # torch, peft and lm-eval's model module: ~20 s of imports and models on two cores


def test_shared_answers_match_lm_evals_own_model_for_every_adapter(demo_kit, random_adapter):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer.evaluation.benchmark_lm import AdapterLM, SharedAnswers
    from trainer.inference.generation import BASE_ADAPTER
    from trainer.model_loading import load_tokenizer
    from trainer.protocol import ModelSource

    adapters = {"c2": random_adapter(11, scale=0.3), "c3": random_adapter(12, scale=0.3)}
    tokenizer = load_tokenizer(ModelSource(str(demo_kit.model_dir)))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_kit.model_dir), adapters["c2"], adapter_name="c2")
    model.load_adapter(adapters["c3"], adapter_name="c3")
    model.eval()
    choices = [
        Instance("loglikelihood", {}, (f"### Request:\nwhere is my order {n}\n### Intent:", f" {intent}"), 0)
        for n in range(3)
        for intent in ("track_order", "cancel_order")
    ]
    generations = [
        Instance(
            "generate_until",
            {},
            (f"### Request:\nmy parcel {n} is late\n### Intent:\n", {"until": ["\n"], "max_gen_toks": 6, "do_sample": False}),
            0,
        )
        for n in range(3)
    ]
    names = [BASE_ADAPTER, "c2", "c3"]
    shared = SharedAnswers(model, tokenizer, names, batch_size=4)
    ours = {name: (AdapterLM(shared, name).loglikelihood(choices), AdapterLM(shared, name).generate_until(generations)) for name in names}
    assert ours["c2"][0] != ours["c3"][0], "the adapters answer differently"

    for name in names:
        reference = AutoModelForCausalLM.from_pretrained(demo_kit.model_dir)
        reference.generation_config.max_new_tokens = None  # HFLM bounds by max_length, which the kit's 32 would override
        if name != BASE_ADAPTER:
            reference = PeftModel.from_pretrained(reference, adapters[name])
        lm = HFLM(pretrained=reference.eval(), tokenizer=tokenizer, batch_size=1, add_bos_token=True)
        theirs = lm.loglikelihood(choices, disable_tqdm=True)
        assert [g for _, g in ours[name][0]] == [g for _, g in theirs], name
        assert [lp for lp, _ in ours[name][0]] == pytest.approx([lp for lp, _ in theirs], abs=1e-4), name
        assert [t.strip() for t in ours[name][1]] == [t.strip() for t in lm.generate_until(generations, disable_tqdm=True)], name
