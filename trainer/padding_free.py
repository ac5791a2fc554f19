"""Padding-free micro-batches for SFT on a CUDA GPU (issue 7): which attention kernel can run whole examples packed
into one sequence, and the batch settings that go with it. Standard library only, like ``trainer.training_arguments``,
which calls it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer.protocol import qlora_micro_batch_rows

if TYPE_CHECKING:
    from trainer.training_arguments import DeviceCaps

FLEX_BLOCK = 128  # torch.nn.attention.flex_attention's default sparse block size
VARLEN_ATTENTION = "torch_varlen"  # trainer.varlen_attention registers it under this name


def padding_free_attention(
    settings: dict[str, Any], device: DeviceCaps, config: dict[str, Any], notes: list[str], training_mode: str = "lora"
) -> str | None:
    """Padding-free micro-batches where an attention kernel can run them; the attention implementation to load.

    Each micro-batch is ``rows`` BFD-packed rows of whole examples (up to ``max_length`` tokens each,
    longer examples truncated there as without packing) that the collator concatenates into one
    sequence with per-example position ids: ``rows * max_length`` is the token budget. flash-attention
    and PyTorch's varlen flash kernel read the boundaries from the position ids; flex_attention gets a block-diagonal causal mask
    built from them, computing only the blocks inside each example.
    """
    budget = int(settings.get("max_tokens_per_batch") or 0)
    if not settings.get("padding_free", False):
        if budget:
            notes.append("max_tokens_per_batch ignored without padding-free batches")
        return None
    if device.kind != "cuda" or not (device.flash_attention or device.varlen_attention or device.flex_attention):
        notes.append("padding-free batches off: they need flash or flex attention on a CUDA GPU (padded batches with SDPA instead)")
        if budget:
            notes.append("max_tokens_per_batch ignored without padding-free batches")
        return None
    # TRL enforces max_length with padding-free only through BFD packing, which is padding-free by construction.
    config.update(packing=True, packing_strategy="bfd", padding_free=True)
    max_length = int(config.get("max_length") or 1024)
    if budget:
        if budget < max_length:
            notes.append(f"max_length lowered to the token budget {budget}: an example must fit one micro-batch")
            config["max_length"] = max_length = budget
        config["per_device_train_batch_size"] = budget // max_length
    rows = int(config.get("per_device_train_batch_size") or 8)
    smaller = qlora_micro_batch_rows(rows, max_length) if training_mode == "qlora" and not budget else rows
    if smaller < rows:
        accumulate = int(config.get("gradient_accumulation_steps") or 1) * (rows // smaller)
        config.update(per_device_train_batch_size=smaller, gradient_accumulation_steps=accumulate)
        notes.append(
            f"QLoRA: micro-batches of {smaller} rows accumulated {accumulate}x (same rows per optimizer step, "
            f"half the activation memory or less)"
        )
        rows = smaller
    # flash-attn's own kernels first; then the same kernels as PyTorch ships them (nothing to compile);
    # flex_attention last: as fast once compiled, but compiling costs minutes on a cold cache.
    attn = "flash_attention_2" if device.flash_attention else VARLEN_ATTENTION if device.varlen_attention else "flex_attention"
    if attn == "flex_attention":
        # Compiled flex kernels specialise on the sequence length: rounding it up to flex's 128-token
        # block keeps nearly every full micro-batch one shape (BFD fills them to ~99.9%), so the
        # kernels compile once and later runs find them in the compile cache.
        config["pad_to_multiple_of"] = FLEX_BLOCK
    notes.append(f"padding-free with {attn}: micro-batches of {rows} packed rows, up to {rows * max_length:,} tokens")
    return attn
