"""Subprocess entry points that own torch/transformers/peft: training, evaluation, export, serving and the demo kit."""
