"""How an evaluation's combinations answer (issue 17): adapter by adapter through the graphed sampler, each answer and
each reference score equal to the adapter's own unbatched ``generate`` and forward pass; mixed batches otherwise."""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")

REQUESTS = [
    "Where is my parcel?",
    "Play some jazz please, I would love it",
    "I was charged twice for the same order last week and nobody answered my two emails about it",
    "Cancel it",
    "My new headphones arrived broken, the left side makes no sound at all. Can I get a replacement or my money back?",
    "Change my delivery address to Boston",
    "hi",
    "The kettle I bought from you in March stopped working after two weeks; what does the warranty cover here?",
]


@pytest.fixture(scope="module", autouse=True)
def global_rng_left_alone():
    """Later modules' random adapters draw their A matrices from the global generator (and with weak adapters an
    evaluation test asserts that two of them answer differently): this module leaves it as it found it."""
    with torch.random.fork_rng():
        yield


@pytest.fixture(scope="module")
def adapter_files(random_adapter) -> dict[str, str]:
    return {"one": str(random_adapter(1, scale=0.3)), "two": str(random_adapter(2, scale=0.3))}


@pytest.fixture(scope="module")
def loaded(demo_kit, adapter_files):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer.model_loading import load_tokenizer
    from trainer.protocol import ModelSource

    tokenizer = load_tokenizer(ModelSource(str(demo_kit.model_dir)))
    model = AutoModelForCausalLM.from_pretrained(demo_kit.model_dir)
    model = PeftModel.from_pretrained(model, adapter_files["one"], adapter_name="one")
    model.load_adapter(adapter_files["two"], adapter_name="two")
    return model.eval(), tokenizer


def encoded(tokenizer, demo_kit):
    from trainer.inference.generation import encode_answer, encode_prompt

    template = demo_kit.prompt["input_template"]
    prompts = [encode_prompt(tokenizer, template.format(request=r)) for r in REQUESTS]
    answers = [encode_answer(tokenizer, template.format(request=r), ids, "track_order") for r, ids in zip(REQUESTS, prompts)]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]) - len(answers[i]))
    return prompts, answers, order


def test_each_adapter_answers_in_turn_as_it_would_alone_unbatched(loaded, demo_kit, monkeypatch) -> None:
    from trainer.evaluation.answer_batches import answer_batches, only_adapter
    from trainer.inference import graphed_sampler
    from trainer.inference.generation import BASE_ADAPTER, answer_log_likelihood, generate_batch, generation_config

    model, tokenizer = loaded
    monkeypatch.setattr(graphed_sampler, "PREFILL_TOKENS", 96)  # the prefill in several parts of similar lengths
    config = generation_config(model, tokenizer, {"max_new_tokens": 10, "do_sample": False})
    adapters = [BASE_ADAPTER, "one", "two"]
    prompts, answers, order = encoded(tokenizer, demo_kit)
    batches = list(answer_batches(model, tokenizer, config, adapters, prompts, answers, order, batch_size=2))

    # Chunks of batch_size x combinations rows, longest first; within a chunk each combination in turn.
    assert [(b.combinations, b.rows) for b in batches] == [([k], order[s : s + 6]) for s in (0, 6) for k in range(3)]
    assert model.active_adapter == "one", "the adapter active before is active again"
    texts: dict[str, list[str]] = {name: [] for name in adapters}
    for batch in batches:
        name = adapters[batch.combinations[0]]
        with only_adapter(model, name):
            for i, text, count, (likelihood, tokens) in zip(batch.rows, batch.generated.texts, batch.generated.new_tokens, batch.scored):
                alone = generate_batch(model, tokenizer, [prompts[i]], config)
                assert (text, count) == (alone.texts[0], alone.new_tokens[0]), (name, i)
                [(expected, expected_tokens)] = answer_log_likelihood(model, [prompts[i]], [answers[i]], tokenizer.pad_token_id)
                assert likelihood == pytest.approx(expected, abs=1e-4) and tokens == expected_tokens
                texts[name].append(text)
    assert len({tuple(t) for t in texts.values()}) == 3, "each adapter answers differently"


def test_the_adapters_take_turns_in_one_sampler_with_the_weights_folded_in(loaded, demo_kit) -> None:
    from trainer.evaluation.answer_batches import graphed_sampler
    from trainer.inference.generation import BASE_ADAPTER, generation_config

    model, tokenizer = loaded
    config = generation_config(model, tokenizer, {"max_new_tokens": 4, "do_sample": False})
    sampler = graphed_sampler(model, tokenizer, config, [BASE_ADAPTER, "one", "two"])
    assert sampler is not None and sampler.merged is not None and sampler.model is model.get_base_model()


def test_generation_settings_the_sampler_does_not_reproduce_keep_mixed_batches(loaded, demo_kit) -> None:
    from trainer.evaluation.answer_batches import answer_batches, graphed_sampling
    from trainer.inference.generation import BASE_ADAPTER, generation_config
    from trainer.inference.token_sampling import Sampling

    model, tokenizer = loaded
    for settings in ({"num_beams": 2}, {"repetition_penalty": 1.3}, {"no_repeat_ngram_size": 2}):
        assert graphed_sampling(generation_config(model, tokenizer, {"max_new_tokens": 4, **settings})) is None, settings
    sampled = generation_config(model, tokenizer, {"max_new_tokens": 4, "do_sample": True, "temperature": 0.7, "top_k": 5, "top_p": 0.9})
    assert graphed_sampling(sampled) == Sampling(temperature=0.7, top_k=5, top_p=0.9)

    config = generation_config(model, tokenizer, {"max_new_tokens": 4, "do_sample": False, "repetition_penalty": 1.3})
    prompts, answers, order = encoded(tokenizer, demo_kit)
    batches = list(answer_batches(model, tokenizer, config, [BASE_ADAPTER, "one"], prompts, answers, order[:3], batch_size=2))
    assert [(b.combinations, b.rows) for b in batches] == [([0, 1], order[:2]), ([0, 1], order[2:3])]
    assert len(batches[0].generated.texts) == len(batches[0].scored) == 4


def test_adapters_that_do_not_fold_into_the_weights_keep_mixed_batches(demo_kit, tmp_path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from trainer.evaluation.answer_batches import graphed_sampler
    from trainer.inference.generation import BASE_ADAPTER, generation_config
    from trainer.model_loading import load_tokenizer
    from trainer.protocol import ModelSource

    torch.manual_seed(0)
    dora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(demo_kit.model_dir), LoraConfig(r=4, target_modules="all-linear", use_dora=True)
    )
    dora.save_pretrained(tmp_path / "dora")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_kit.model_dir), str(tmp_path / "dora"), adapter_name="one")
    tokenizer = load_tokenizer(ModelSource(str(demo_kit.model_dir)))
    config = generation_config(model, tokenizer, {"max_new_tokens": 4, "do_sample": False})
    # A graph captured with one adapter's own kernels would replay them for the next: two combinations stay mixed.
    assert graphed_sampler(model, tokenizer, config, [BASE_ADAPTER, "one"]) is None
    alone = graphed_sampler(model, tokenizer, config, ["one"])
    assert alone is not None and alone.merged is None


def test_adapters_saved_like_the_attached_one_take_turns_in_its_tensors(loaded, demo_kit, adapter_files, tmp_path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from trainer.evaluation.answer_batches import answer_batches
    from trainer.inference.generation import BASE_ADAPTER, generation_config

    attached, tokenizer = loaded  # "one" and "two" both attached
    config = generation_config(attached, tokenizer, {"max_new_tokens": 6, "do_sample": False})
    adapters = [BASE_ADAPTER, "one", "two"]
    prompts, answers, order = encoded(tokenizer, demo_kit)
    expected = [
        (b.combinations, b.generated.texts, b.scored)
        for b in answer_batches(attached, tokenizer, config, adapters, prompts, answers, order, 2)
    ]

    files = dict(adapter_files)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_kit.model_dir), files["one"], adapter_name="one").eval()
    before = {name: p.clone() for name, p in model.named_parameters() if "lora_" in name}
    batches = list(answer_batches(model, tokenizer, config, adapters, prompts, answers, order, 2, files))
    assert list(model.peft_config) == ["one"], "two took its turns in one's tensors, never attached"
    assert [(b.combinations, b.generated.texts) for b in batches] == [(c, t) for c, t, _ in expected]
    assert [s for b in batches for s, _ in b.scored] == pytest.approx([s for _, _, scored in expected for s, _ in scored], abs=1e-4)
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters() if "lora_" in name), "one's own weights are back"

    # An adapter of another rank would need other layers: attached as PEFT attaches it.
    torch.manual_seed(0)
    other = get_peft_model(AutoModelForCausalLM.from_pretrained(demo_kit.model_dir), LoraConfig(r=8, target_modules="all-linear"))
    other.save_pretrained(tmp_path / "rank8")
    files["three"] = str(tmp_path / "rank8")
    list(answer_batches(model, tokenizer, config, [*adapters, "three"], prompts[:2], answers[:2], [0, 1], 2, files))
    assert set(model.peft_config) == {"one", "two", "three"}


def test_too_few_rows_to_fill_a_chunk_decode_every_adapter_at_once_in_blocks(loaded, demo_kit, adapter_files, monkeypatch) -> None:
    """8 rows, 3 combinations, batch_size 4: a chunk of 12 rows would hold 8, so the combinations' copies of each 4
    rows decode together (12 rows a step), each block through its own adapter, each answer as it would be alone."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer.evaluation import answer_batches as module
    from trainer.evaluation.answer_batches import answer_batches, only_adapter
    from trainer.inference import graphed_sampler
    from trainer.inference.generation import BASE_ADAPTER, answer_log_likelihood, generate_batch, generation_config
    from trainer.inference.merged_adapters import MergedAdapters

    model, tokenizer = loaded
    monkeypatch.setattr(graphed_sampler, "PREFILL_TOKENS", 96)
    monkeypatch.setattr(module, "mixed_batches", None)  # not the mixed generate() path, which batches the same way
    folds: list[str] = []
    refresh = MergedAdapters.refresh
    monkeypatch.setattr(MergedAdapters, "refresh", lambda self: (folds.append(model.active_adapter), refresh(self))[1])
    config = generation_config(model, tokenizer, {"max_new_tokens": 8, "do_sample": False})
    adapters = [BASE_ADAPTER, "one", "two"]
    prompts, answers, order = encoded(tokenizer, demo_kit)
    batches = list(answer_batches(model, tokenizer, config, adapters, prompts, answers, order, batch_size=4))
    assert [(b.combinations, b.rows) for b in batches] == [([0, 1, 2], order[:4]), ([0, 1, 2], order[4:])]
    assert len(folds) == 6 and folds[1:3] == ["one", "two"], "each block prefilled with its adapter folded in"
    for batch in batches:
        for k, (text, (likelihood, _)) in enumerate(zip(batch.generated.texts, batch.scored)):
            name, i = adapters[k // len(batch.rows)], batch.rows[k % len(batch.rows)]
            with only_adapter(model, name):
                assert text == generate_batch(model, tokenizer, [prompts[i]], config).texts[0], (name, i)
                [(expected, _)] = answer_log_likelihood(model, [prompts[i]], [answers[i]], tokenizer.pad_token_id)
            assert likelihood == pytest.approx(expected, abs=1e-4)
    assert all("forward" not in layer.__dict__ for layer in model.modules()), "PEFT's own forward back on every layer"

    # The same with "two" taking turns in "one"'s tensors, never attached.
    fresh = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_kit.model_dir), adapter_files["one"], adapter_name="one")
    again = list(answer_batches(fresh.eval(), tokenizer, config, adapters, prompts, answers, order, 4, adapter_files))
    assert list(fresh.peft_config) == ["one"]
    assert [b.generated.texts for b in again] == [b.generated.texts for b in batches]
