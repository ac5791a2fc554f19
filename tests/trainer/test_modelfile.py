"""The Ollama Modelfile of a GGUF export prompts the model exactly as training did: chat templates and raw-text prompts."""

from __future__ import annotations

import pytest

from tests.trainer.modelfile_reader import read_modelfile, render
from trainer.data.training_data import prompt_at_token_boundary
from trainer.export.modelfile import chat_template, chat_turns, modelfile_text, ollama_name, parameters, stop_words, text_template
from trainer.protocol import render_template

CONVERSATIONS = [
    [{"role": "user", "content": "Where is my order?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Cancel it {{ please }}"},
    ],
]
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)  # SmolLM2-Instruct's, as its GGUF holds it


def ollama_prompt(modelfile: str, turns: list[dict[str, str]]) -> str:
    """What Ollama renders for a chat request: its SYSTEM goes first when the client sends no system turn."""
    read = read_modelfile(modelfile)
    if read.system is not None and turns[0]["role"] != "system":
        turns = [{"role": "system", "content": read.system}, *turns]
    return render(read.template, turns)


def written(tokenizer, adds_bos: bool) -> str:
    turns = chat_turns(
        lambda messages, generate: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generate),
        tokenizer.bos_token,
        adds_bos,
    )
    generation = {"eos_token_id": tokenizer.eos_token_id}
    return modelfile_text(
        "m.gguf", chat_template(turns), stop_words(tokenizer, generation), parameters(generation), turns.default_system, "note"
    )


@pytest.mark.parametrize("template", ["demo", "chatml"])
def test_the_chat_template_becomes_an_ollama_template_that_renders_the_same_turns(demo_kit, template):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_kit.model_dir)
    if template == "chatml":
        tokenizer.chat_template = CHATML
    for adds_bos in (False, True):
        modelfile = written(tokenizer, adds_bos)
        for turns in CONVERSATIONS:
            expected = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
            if adds_bos and tokenizer.bos_token and template == "demo":  # llama.cpp prepends the BOS the template printed
                expected = expected.removeprefix(tokenizer.bos_token)
            assert ollama_prompt(modelfile, turns) == expected
    read = read_modelfile(modelfile)
    assert read.source == "./m.gguf" and read.stops == [tokenizer.eos_token] and read.parameters == {"temperature": "0"}
    assert (read.system is not None) == (template == "chatml")  # SmolLM2's default system prompt is Ollama's SYSTEM


def test_a_raw_text_adapter_gets_its_input_template_cut_where_training_cut_it():
    template = "Request: {instruction}\nIntent: "
    row = {"instruction": "I want my money back"}
    trained = prompt_at_token_boundary(render_template(template, row), "refund")["prompt"]
    assert render(text_template(template), prompt=row["instruction"]) == trained == "Request: I want my money back\nIntent:"
    assert render(text_template("Q: {a} {b}\nA:"), prompt="Q: 1 2\nA:") == "Q: 1 2\nA:"  # several fields: the client fills them
    assert text_template(None) == "{{ .Prompt }}" and render(text_template("{{{{ {x}"), prompt="v") == "{{ v"


def test_generation_settings_and_names():
    assert parameters({}) == {"temperature": 0}
    assert parameters(
        {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.1, "max_new_tokens": 64}
    ) == {"temperature": 0.7, "top_k": 20, "top_p": 0.9, "repeat_penalty": 1.1, "num_predict": 64}
    assert ollama_name("My-Adapter v2", "q8_0") == "my-adapter-v2:q8_0"
    with pytest.raises(ValueError, match='"""'):
        modelfile_text("m.gguf", 'say """', [], {}, None, "")
