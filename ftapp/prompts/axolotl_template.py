"""The Axolotl config ftapp ships (seed 001's template.yaml): a LoRA run to copy and change, stored as this text."""

from __future__ import annotations

TEMPLATE_NAME = "axolotl lora template"
TEMPLATE_YAML = """\
# An Axolotl LoRA run. ftapp writes the run's base model, its dataset's path, output_dir and
# dataset_prepared_path into it; the rest is yours (https://docs.axolotl.ai/docs/config-reference.html).
# Keys that run code or reach a server (trust_remote_code, plugins, wandb_*, hub pushes...) are refused.
base_model:            # the run's base model
datasets:
  - path:              # the run's dataset
    type: alpaca       # columns instruction, input (optional), output
val_set_size: 0.05
sequence_len: 1024

adapter: lora
lora_r: 16
lora_alpha: 32
lora_dropout: 0.05
lora_target_linear: true

micro_batch_size: 4
gradient_accumulation_steps: 2
num_epochs: 1
optimizer: adamw_torch
lr_scheduler: cosine
learning_rate: 0.0002
warmup_ratio: 0.03

bf16: auto
gradient_checkpointing: true
logging_steps: 1
evals_per_epoch: 4
saves_per_epoch: 1
"""
