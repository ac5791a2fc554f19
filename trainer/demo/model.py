"""Build the offline demo kit: a tiny pre-trained Llama, its tokenizer, a dataset and a prompt.

Nothing is downloaded: the tokenizer is trained and the model pre-trained here, on the synthetic
corpus of ``trainer.demo.corpus``. The short pre-training matters: LoRA on a randomly
initialised model barely moves its outputs, so a demo fine-tune would show nothing.

Layout of a kit directory::

    model/          model (safetensors), tokenizer, generation config
    dataset.jsonl   the demo dataset, one {"request", "intent"} object per line
    prompt.json     the demo prompt (name and templates)
    demo_kit.json   manifest, written last; its presence marks a complete kit
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from trainer.demo.corpus import demo_dataset, demo_prompt, pretraining_texts, qa_pairs

MODEL_SUBDIR = "model"
DATASET_FILE = "dataset.jsonl"
PROMPT_FILE = "prompt.json"
MANIFEST_FILE = "demo_kit.json"

_BOS, _EOS, _PAD, _UNK = "<s>", "</s>", "<pad>", "<unk>"
_ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
# The template starts with bos_token because apply_chat_template tokenizes without special tokens.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_VOCAB_SIZE = 1536
_BLOCK_SIZE = 128
_BATCH_SIZE = 8
_EVAL_BLOCKS = 16
_PEAK_LR = 5e-3


@dataclass(frozen=True)
class DemoKit:
    """Where a built kit lives and what its pre-training achieved."""

    model_dir: Path
    dataset_path: Path
    prompt: dict[str, str]
    architecture: str
    num_parameters: int
    pretrain_loss_start: float
    pretrain_loss_end: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_dir": str(self.model_dir), "dataset_path": str(self.dataset_path)}

    def to_json(self) -> str:
        """One line of JSON: the ``python -m trainer demo`` result."""
        return json.dumps(self.to_dict(), sort_keys=True)


def load_demo_kit(out_dir: Path) -> DemoKit:
    """The kit previously built into ``out_dir``; FileNotFoundError when none was completed there."""
    out_dir = Path(out_dir).resolve()
    fields = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    # The manifest stores paths relative to the kit so the directory can be moved as a whole.
    fields["model_dir"] = out_dir / fields["model_dir"]
    fields["dataset_path"] = out_dir / fields["dataset_path"]
    return DemoKit(**fields)


def build_demo_kit(out_dir: Path, *, pretrain_steps: int = 200, seed: int = 0) -> DemoKit:
    """Build a kit into ``out_dir``, which must be absent or empty.

    The kit is assembled in a hidden sibling directory and renamed into place at the end, so an
    interrupted build leaves no directory that looks like a finished kit.
    """
    if pretrain_steps < 0:
        raise ValueError(f"pretrain_steps must be >= 0, got {pretrain_steps}")
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"demo kit directory is not empty: {out_dir}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's private 0700 would otherwise become the kit's mode
        kit = _build_into(staging, pretrain_steps=pretrain_steps, seed=seed)
        # rename(2) replaces an empty directory atomically, so a pre-created empty out_dir is fine.
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return replace(kit, model_dir=out_dir / MODEL_SUBDIR, dataset_path=out_dir / DATASET_FILE)


def _build_into(kit_dir: Path, *, pretrain_steps: int, seed: int) -> DemoKit:
    texts = pretraining_texts(seed)
    tokenizer = _train_tokenizer(texts)
    with _seeded(seed), _cpu_threads():
        model = _new_model(tokenizer)
        blocks = _pack(tokenizer, texts, qa_pairs(seed))
        loss_start, loss_end = _pretrain(model, blocks, steps=pretrain_steps, seed=seed)

    model_dir = kit_dir / MODEL_SUBDIR
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)

    rows = demo_dataset(seed)
    (kit_dir / DATASET_FILE).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    prompt = demo_prompt()
    (kit_dir / PROMPT_FILE).write_text(json.dumps(prompt, indent=2) + "\n", encoding="utf-8")

    kit = DemoKit(
        model_dir=Path(MODEL_SUBDIR),
        dataset_path=Path(DATASET_FILE),
        prompt=prompt,
        architecture=type(model).__name__,
        num_parameters=model.num_parameters(),
        pretrain_loss_start=round(loss_start, 4),
        pretrain_loss_end=round(loss_end, 4),
    )
    (kit_dir / MANIFEST_FILE).write_text(json.dumps(kit.to_dict(), indent=2) + "\n", encoding="utf-8")
    return kit


def _train_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE: any input text encodes without unknown tokens, so user data never breaks it."""
    backend = Tokenizer(models.BPE(unk_token=_UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=_VOCAB_SIZE,
            min_frequency=2,
            special_tokens=[_UNK, _BOS, _EOS, _PAD, *_ROLE_TOKENS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=_BOS,
        eos_token=_EOS,
        pad_token=_PAD,
        unk_token=_UNK,
        extra_special_tokens=list(_ROLE_TOKENS),
        # Llama convention: BOS is prepended on encode, EOS is left to the caller (training code).
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=512,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def _new_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    # Grouped-query attention (4 heads, 2 KV heads) keeps the shapes of real Llama checkpoints,
    # so code paths tested on the demo model are the ones real models take.
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=32,
    )
    return model


def _pack(tokenizer: PreTrainedTokenizerFast, texts: list[str], chats: list[tuple[str, str]]) -> torch.Tensor:
    """Concatenate every document (each ending in EOS) and cut the stream into fixed-length blocks."""
    plain = tokenizer(texts).input_ids  # BOS is prepended by the tokenizer
    rendered = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False)
        for q, a in chats
    ]
    # The chat template already emits BOS and EOS, so no special tokens are added here.
    chat_ids = tokenizer(rendered, add_special_tokens=False).input_ids
    stream = [tok for ids in plain for tok in (*ids, tokenizer.eos_token_id)]
    stream += [tok for ids in chat_ids for tok in ids]
    usable = len(stream) // _BLOCK_SIZE * _BLOCK_SIZE
    blocks = torch.tensor(stream[:usable], dtype=torch.long).view(-1, _BLOCK_SIZE)
    # Shuffle so the held-out evaluation blocks mix plain and chat documents.
    return blocks[torch.randperm(len(blocks))]


def _pretrain(model: LlamaForCausalLM, blocks: torch.Tensor, *, steps: int, seed: int) -> tuple[float, float]:
    """Train on ``blocks`` minus a held-out slice; return the held-out loss before and after."""
    held_out, train = blocks[:_EVAL_BLOCKS], blocks[_EVAL_BLOCKS:]
    loss_start = _eval_loss(model, held_out)
    optimizer = torch.optim.AdamW(model.parameters(), lr=_PEAK_LR, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, steps // 10)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    sampler = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = train[torch.randint(len(train), (_BATCH_SIZE,), generator=sampler)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    return loss_start, _eval_loss(model, held_out)


@torch.no_grad()
def _eval_loss(model: LlamaForCausalLM, blocks: torch.Tensor) -> float:
    model.eval()
    return float(model(input_ids=blocks, labels=blocks).loss)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch for the build without disturbing the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def _cpu_threads() -> Iterator[None]:
    """Half the cores, at most 4: the matrices are tiny, so extra threads mostly spin and wait.

    Measured on 2 cores: two threads were no faster than one on an idle machine, and 5-9x slower
    while another process (the app's server, a parallel test run) kept a core busy.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, min(4, (os.cpu_count() or 1) // 2)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
