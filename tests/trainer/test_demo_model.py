"""The offline demo kit: a loadable, pre-trained model that a short LoRA run visibly teaches."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer.__main__ import main
from trainer.demo.corpus import INTENTS, demo_dataset, pretraining_texts
from trainer.demo.model import DemoKit, build_demo_kit, load_demo_kit

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE once at import, so the constant is set as well as the variable.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)


@pytest.fixture
def one_thread() -> Iterator[None]:
    # The model is tiny: on a shared 2-core machine extra torch threads mostly spin (see _cpu_threads).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tokenizer(demo_kit: DemoKit):
    return AutoTokenizer.from_pretrained(demo_kit.model_dir)


def _generate(model, tokenizer, requests: list[str], input_template: str) -> list[str]:
    """Greedy answers, batched: left padding keeps every prompt's last token at the same position."""
    prompts = [input_template.format(request=request) for request in requests]
    batch = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    return [answer.strip() for answer in tokenizer.batch_decode(out[:, batch.input_ids.shape[1] :], skip_special_tokens=True)]


def test_model_and_tokenizer_load_with_the_hub_offline(demo_kit: DemoKit, offline: None) -> None:
    tokenizer = AutoTokenizer.from_pretrained(demo_kit.model_dir)
    model = AutoModelForCausalLM.from_pretrained(demo_kit.model_dir)
    assert type(model).__name__ == demo_kit.architecture == "LlamaForCausalLM"
    assert model.num_parameters() == demo_kit.num_parameters
    assert model.config.vocab_size == len(tokenizer)
    assert (model.generation_config.eos_token_id, model.generation_config.pad_token_id) == (
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    assert (demo_kit.model_dir / "model.safetensors").is_file()


def test_tokenizer_round_trips_any_text_and_has_pad_and_eos(tokenizer) -> None:
    # Byte-level BPE: text far outside the training corpus still round-trips without <unk>.
    text = "Where is order #90210? Ünïcödé, emoji 🚚 and\ttabs\nnew lines."
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.pad_token and tokenizer.eos_token
    assert len({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id}) == 3


def test_chat_template_renders_roles_and_the_generation_prompt(tokenizer) -> None:
    messages = [
        {"role": "system", "content": "Classify requests."},
        {"role": "user", "content": "Where is my lamp?"},
        {"role": "assistant", "content": "track_order"},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == ("<s><|system|>\nClassify requests.</s>\n<|user|>\nWhere is my lamp?</s>\n<|assistant|>\ntrack_order</s>\n")
    prompt_ids = tokenizer.apply_chat_template(messages[:2], add_generation_prompt=True, tokenize=True, return_dict=False)
    assert prompt_ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(prompt_ids[-2:]) == "<|assistant|>\n"


def test_pretraining_lowered_the_loss_on_unseen_text(demo_kit: DemoKit, tokenizer, one_thread: None) -> None:
    assert demo_kit.pretrain_loss_end < demo_kit.pretrain_loss_start / 3
    # Independent check on documents the build never saw (another seed), against a fresh init.
    ids = [tok for doc in pretraining_texts(seed=12345, documents=60) for tok in tokenizer(doc).input_ids]
    batch = torch.tensor(ids[: len(ids) // 128 * 128]).view(-1, 128)
    trained = AutoModelForCausalLM.from_pretrained(demo_kit.model_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = AutoModelForCausalLM.from_config(trained.config)
    with torch.no_grad():
        trained_loss = trained(input_ids=batch, labels=batch).loss.item()
        untrained_loss = untrained(input_ids=batch, labels=batch).loss.item()
    assert trained_loss < untrained_loss / 3


def _first_layer_checksum(model_dir: Path) -> str:
    weights = load_file(model_dir / "model.safetensors")
    digest = hashlib.sha256()
    for name in sorted(n for n in weights if n.startswith(("model.embed_tokens.", "model.layers.0."))):
        digest.update(name.encode() + weights[name].numpy().tobytes())
    return digest.hexdigest()


def test_build_is_deterministic_per_seed_and_reloadable(tmp_path: Path) -> None:
    first = build_demo_kit(tmp_path / "a", pretrain_steps=3, seed=0)
    second = build_demo_kit(tmp_path / "b", pretrain_steps=3, seed=0)
    other_seed = build_demo_kit(tmp_path / "c", pretrain_steps=3, seed=1)

    assert _first_layer_checksum(first.model_dir) == _first_layer_checksum(second.model_dir)
    assert _first_layer_checksum(first.model_dir) != _first_layer_checksum(other_seed.model_dir)
    assert (first.model_dir / "tokenizer.json").read_bytes() == (second.model_dir / "tokenizer.json").read_bytes()
    assert first.dataset_path.read_bytes() == second.dataset_path.read_bytes()
    assert (first.pretrain_loss_start, first.pretrain_loss_end) == (second.pretrain_loss_start, second.pretrain_loss_end)

    assert load_demo_kit(tmp_path / "a") == first
    # Only the three kits: no staging directory is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


def test_build_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        build_demo_kit(tmp_path / "kit", pretrain_steps=1)
    assert [p.name for p in (tmp_path / "kit").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit"]


def test_demo_dataset_and_prompt_files_match_the_kit(demo_kit: DemoKit) -> None:
    rows = [json.loads(line) for line in demo_kit.dataset_path.read_text().splitlines()]
    assert rows == demo_dataset(seed=0)
    assert {row["intent"] for row in rows} == set(INTENTS)
    assert len({row["request"] for row in rows}) == len(rows) >= 200
    assert json.loads((demo_kit.dataset_path.parent / "prompt.json").read_text()) == demo_kit.prompt
    prompt = demo_kit.prompt
    assert prompt["prompt_template"] == prompt["input_template"] + prompt["completion_template"]
    assert prompt["completion_template"].endswith("{intent}")


def _encode_for_completion_loss(tokenizer, prompt: dict[str, str], row: dict[str, str]) -> tuple[list[int], list[int]]:
    """Token ids and labels with the prompt masked out, so only the completion is learned."""
    prompt_ids = tokenizer(prompt["input_template"].format(**row)).input_ids
    completion_ids = tokenizer(prompt["completion_template"].format(**row), add_special_tokens=False).input_ids
    completion_ids.append(tokenizer.eos_token_id)
    return prompt_ids + completion_ids, [-100] * len(prompt_ids) + completion_ids


def _pad(examples: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, ...]:
    width = max(len(ids) for ids, _ in examples)
    ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in examples])
    labels = torch.tensor([labels + [-100] * (width - len(labels)) for _, labels in examples])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in examples])
    return ids, labels, mask


def test_a_short_lora_fine_tune_learns_the_demo_task(demo_kit: DemoKit, tokenizer, one_thread: None) -> None:
    from peft import LoraConfig, get_peft_model

    prompt = demo_kit.prompt
    train_rows = [json.loads(line) for line in demo_kit.dataset_path.read_text().splitlines()]
    # Requests the fine-tune never sees: the check is for learning the task, not memorising rows.
    seen = {row["request"] for row in train_rows}
    probe = [row for row in demo_dataset(seed=99) if row["request"] not in seen][:32]
    requests = [row["request"] for row in probe]

    model = AutoModelForCausalLM.from_pretrained(demo_kit.model_dir)
    before = _generate(model, tokenizer, requests, prompt["input_template"])

    examples = [_encode_for_completion_loss(tokenizer, prompt, row) for row in train_rows]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"))
        optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=5e-3)
        sampler = torch.Generator().manual_seed(0)
        losses = []
        lora.train()
        for _ in range(80):
            picked = torch.randint(len(examples), (16,), generator=sampler).tolist()
            ids, labels, mask = _pad([examples[i] for i in picked], tokenizer.pad_token_id)
            loss = lora(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    lora.eval()
    after = _generate(lora, tokenizer, requests, prompt["input_template"])

    print(f"LoRA loss {losses[0]:.3f} -> {sum(losses[-10:]) / 10:.3f}")
    assert sum(losses[-10:]) / 10 < losses[0] / 4
    assert any(b != a for b, a in zip(before, after))
    correct_before = sum(answer == row["intent"] for answer, row in zip(before, probe))
    correct_after = sum(answer == row["intent"] for answer, row in zip(after, probe))
    print(f"held-out accuracy {correct_before}/32 -> {correct_after}/32")
    assert correct_after >= max(correct_before + 8, 12)


@pytest.mark.slow
def test_cli_demo_prints_one_json_line_naming_existing_paths(tmp_path: Path, demo_kit: DemoKit) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "demo", str(tmp_path / "kit")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["architecture"] == "LlamaForCausalLM"
    assert Path(summary["model_dir"], "config.json").is_file()
    assert Path(summary["dataset_path"]).is_file()
    # Another process, same default seed: the very same model as the in-process build.
    assert (summary["pretrain_loss_start"], summary["pretrain_loss_end"]) == (
        demo_kit.pretrain_loss_start,
        demo_kit.pretrain_loss_end,
    )
    assert _first_layer_checksum(Path(summary["model_dir"])) == _first_layer_checksum(demo_kit.model_dir)


def test_cli_reports_failures_on_stderr_with_a_non_zero_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken.txt").write_text("x")
    assert main(["demo", str(tmp_path)]) == 1
    assert "FileExistsError" in capsys.readouterr().err
    assert main(["no-such-verb", "x"]) == 2
    assert "usage" in capsys.readouterr().err
