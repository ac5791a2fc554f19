"""The model card (README.md) shipped with an exported adapter or model, from what the database knows.

Base model, data, method, hyper-parameters and, when present, evaluation numbers: the final eval
loss of the training run and the scores of the latest finished evaluation that included the adapter.
Secrets never reach the card: hyper-parameters go through ``redact_mapping`` (secret-looking keys)
and the whole text through ``redact`` (the HF token and token-looking strings). Local paths are left
out: they mean nothing on the Hub and tell strangers about the user's disk.
"""

from __future__ import annotations

import json
from typing import Any

from ftapp.run_vocabulary import RunStatus
from ftapp.runs.specs import UnreadableSpecError, run_spec
from ftapp.secrets import redact, redact_mapping
from storage import AdapterRecord, ModelRecord, RunRecord, Transaction
from trainer.protocol import TrainSpec

# The hyper-parameters people compare; the rest of the resolved TrainingSettings stay in the run's spec.
TRAINING_KEYS = (
    "num_train_epochs",
    "max_steps",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_ratio",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "bf16",
    "fp16",
    "optim",
    "weight_decay",
    "seed",
    "packing",
)
LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "use_dora")


def render_card(
    tx: Transaction, name: str, model: ModelRecord, adapter: AdapterRecord | None, merged: bool, secrets: list[str | None]
) -> str:
    run = tx.runs.get(adapter.run_id) if adapter and adapter.run_id else None
    spec = _spec(run)
    lines = _front_matter(model, adapter, merged, spec) + ["", f"# {name}", "", _summary(model, adapter, merged), ""]
    lines += ["## Base model", "", f"- {model.name}: {_where(model)}"]
    if model.architecture:
        lines.append(f"- architecture: {model.architecture}" + (f", {model.num_parameters:,} parameters" if model.num_parameters else ""))
    if run is not None:
        lines += ["", "## Training", "", *_training(tx, run, spec)]
    evaluation = _evaluation(tx, run, adapter)
    if evaluation:
        lines += ["", "## Evaluation", "", *evaluation]
    lines += ["", "## Use", "", "```python", *_usage(model, adapter, merged, name), "```", ""]
    return redact("\n".join(lines), secrets)


def _spec(run: RunRecord | None) -> TrainSpec | None:
    try:
        return run_spec(run, TrainSpec) if run else None
    except UnreadableSpecError:  # an imported row of another version: the card goes without its settings
        return None


def _front_matter(model: ModelRecord, adapter: AdapterRecord | None, merged: bool, spec: TrainSpec | None) -> list[str]:
    tags = ["ftapp", *((spec.method, spec.training_mode) if spec else ())]
    if adapter is not None:
        tags.append("merged" if merged else "peft")
    lines = ["---", f"library_name: {'peft' if adapter and not merged else 'transformers'}"]
    if model.huggingface_name:  # the Hub validates base_model: only a Hub id belongs there
        lines.append(f"base_model: {model.huggingface_name}")
    if model.license:
        lines.append(f"license: {model.license}")
    lines += ["tags:", *(f"- {tag}" for tag in dict.fromkeys(tags)), "---"]
    return lines


def _summary(model: ModelRecord, adapter: AdapterRecord | None, merged: bool) -> str:
    if adapter is None:
        return f"The model {model.name}, exported by ftapp."
    if merged:
        return f"The LoRA adapter {adapter.name} merged into its base model {model.name}, exported by ftapp."
    return f"A LoRA adapter ({adapter.peft_type or 'PEFT'}) for {model.name}, exported by ftapp. Load it on top of its base model."


def _where(model: ModelRecord) -> str:
    if model.huggingface_name:
        return f"Hugging Face Hub `{model.huggingface_name}`"
    if model.registry_name:
        return f"MLflow registered model `{model.registry_name}` version {model.registry_version}"
    return "a local model directory"


def _training(tx: Transaction, run: RunRecord, spec: TrainSpec | None) -> list[str]:
    lines = [f"- method: {spec.method if spec else '?'} ({spec.training_mode if spec else '?'}), ftapp run `{run.id}`"]
    dataset = tx.datasets.get(run.dataset_id) if run.dataset_id else None
    prompt = tx.prompts.get(run.prompt_id) if run.prompt_id else None
    if dataset is not None:
        source = f"Hub `{dataset.huggingface_name}`" if dataset.huggingface_name else "a local file"
        rows = f", {dataset.num_rows} rows" if dataset.num_rows is not None else ""
        lines.append(
            f"- data: {dataset.name} ({source}{rows}), fraction {spec.data.fraction if spec else 1.0}, "
            f"train split {spec.data.train_split if spec else '?'}" + (f", prompt template {prompt.name}" if prompt else "")
        )
    values = redact_mapping(
        {
            **{k: v for k, v in (spec.training if spec else {}).items() if k in TRAINING_KEYS},
            **{f"lora {k}": v for k, v in (spec.lora if spec else {}).items() if k in LORA_KEYS},
        }
    )
    if values:
        lines += ["", "| hyper-parameter | value |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in values.items())]
    return lines


def _evaluation(tx: Transaction, run: RunRecord | None, adapter: AdapterRecord | None) -> list[str]:
    lines = []
    if run is not None:
        final = {name: points[-1][1] for name, points in tx.metric_points.series(run.id).items() if name.startswith("eval_") and points}
        lines += [f"- training run, final {name}: {value:.4g}" for name, value in sorted(final.items())]
    latest = _latest_evaluation(tx, adapter) if adapter else None
    if latest is not None:
        run_id, position = latest
        scores = {s.metric: s.value for s in tx.evaluation_scores.find(run_id=run_id, position=position)}
        shown = {m: v for m, v in scores.items() if not m.startswith("delta_")}
        if shown:
            lines += [
                "",
                f"Evaluation run `{run_id}` (held-out rows):",
                "",
                "| metric | value |",
                "|---|---|",
                *(f"| {m} | {v:.4g} |" for m, v in sorted(shown.items())),
            ]
    return lines


def _latest_evaluation(tx: Transaction, adapter: AdapterRecord) -> tuple[str, int] | None:
    for combo in reversed(tx.evaluation_combinations.find(adapter_id=adapter.id)):
        evaluation = tx.runs.get(combo.run_id)
        if evaluation is not None and evaluation.status == RunStatus.SUCCEEDED:
            return combo.run_id, combo.position
    return None


def _usage(model: ModelRecord, adapter: AdapterRecord | None, merged: bool, name: str) -> list[str]:
    if adapter is not None and not merged:
        base = model.huggingface_name or "<the base model directory>"
        return [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base}", dtype="auto")',
            f'model = PeftModel.from_pretrained(base, "<this folder or Hub repo: {name}>")',
            f'tokenizer = AutoTokenizer.from_pretrained("<this folder or Hub repo: {name}>")',
        ]
    return [
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("<this folder or Hub repo: {name}>", dtype="auto")',
        f'tokenizer = AutoTokenizer.from_pretrained("<this folder or Hub repo: {name}>")',
    ]


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")
