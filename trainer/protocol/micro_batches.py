"""How many rows a QLoRA micro-batch holds: the trainer resolves it (``trainer.training_arguments``) and the preflight
plans the same micro-batches before the run, so the rule lives here once."""

from __future__ import annotations

QLORA_TOKENS_PER_MICRO_BATCH = 8192  # keeps an 8B model's QLoRA run under 14 GiB with checkpointing


def qlora_micro_batch_rows(rows: int, max_length: int) -> int:
    """QLoRA is chosen for a small footprint: ``rows`` padding-free rows of up to ``max_length`` tokens become
    micro-batches of at most QLORA_TOKENS_PER_MICRO_BATCH tokens, of a divisor of ``rows`` rows so that accumulating
    ``rows // result`` of them keeps the rows per optimizer step. ``rows`` itself when they fit already."""
    if rows <= 1 or rows * max_length <= QLORA_TOKENS_PER_MICRO_BATCH:
        return rows
    smaller = max(1, QLORA_TOKENS_PER_MICRO_BATCH // max_length)
    while rows % smaller:
        smaller -= 1
    return smaller
