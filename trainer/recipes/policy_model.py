"""The model a DPO or GRPO run trains, and what its reference model is.

A fresh LoRA/QLoRA adapter goes to the TRL trainer as a ``LoraConfig`` with no ``ref_model``: TRL then
computes the reference log-probabilities with the adapter disabled (``use_adapter(model, None)`` in
``DPOTrainer._compute_loss`` / ``GRPOTrainer``), so the reference is the base model and costs no
second copy. With ``init_adapter`` (say an SFT run's adapter) the model arrives as a trainable
``PeftModel``; TRL copies its weights into a frozen second adapter named "ref" and uses that as the
reference: the policy starts from, and is held near, the SFT model, at the cost of one adapter's
memory. That "ref" adapter is deleted before the result is saved. Full fine-tuning keeps TRL's
default: a second copy of the base model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from peft import LoraConfig, PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trainer.model_loading import load_model, read_model_shape
from trainer.protocol import TrainSpec
from trainer.recipes.method_settings import preference_training, resolved_settings
from trainer.training_arguments import DeviceCaps, MethodLoad, ResolvedTraining, fit_to_installed, resolve_training

REFERENCE_ADAPTER = "ref"  # the name TRL 1.16 gives the frozen copy of a continued adapter


@dataclass
class Policy:
    model: PreTrainedModel | PeftModel
    peft_config: LoraConfig | None
    resolved: ResolvedTraining
    config: dict[str, Any]  # the resolved training settings the method's TRL config class accepts
    notes: list[str]


def prepare_policy(
    spec: TrainSpec, device: DeviceCaps, *, has_validation: bool, config_class: type, prompt_tokens: int | None = None
) -> Policy:
    """The DPO/GRPO run's training settings for this device (``trainer.training_arguments``, as for SFT, minus
    what only SFT's data supports) and its model. ``prompt_tokens``: GRPO's longest prompt, for the memory plan."""
    notes: list[str] = []
    method = resolved_settings(spec.method, spec.method_settings)
    resolved = resolve_training(
        preference_training(spec.training, spec.method, notes),
        device,
        training_mode=spec.training_mode,
        output_dir=str(spec.checkpoint_dir),
        has_validation=has_validation,
        completion_only_loss=None,
        assistant_only_loss=False,
        model=read_model_shape(spec.model) if device.kind == "cuda" else None,
        load=MethodLoad(
            spec.method,
            lora_rank=int(spec.lora.get("r", 16)),
            prompt_tokens=prompt_tokens,
            completion_tokens=int(method.get("max_completion_length", 0)),
            beta=float(method["beta"]),
        ),
    )
    notes += resolved.notes
    model, peft_config = load_policy(spec, resolved, device, notes)
    accepted = {f.name for f in fields(config_class)}
    config = {key: value for key, value in fit_to_installed(resolved.config, accepted).items() if key in accepted}
    return Policy(model, peft_config, resolved, config, notes)


def load_policy(
    spec: TrainSpec, resolved: ResolvedTraining, device: DeviceCaps, notes: list[str]
) -> tuple[PreTrainedModel | PeftModel, LoraConfig | None]:
    """The model to train and the LoRA config for the trainer to apply (None when there is nothing to apply)."""
    model, peft_config = load_model(spec, resolved, device)
    if not spec.init_adapter:
        return model, peft_config
    notes.append(
        f"continuing the adapter {spec.init_adapter} (its own LoRA settings; spec.lora is not used), "
        "with a frozen copy of it as the reference model"
    )
    return PeftModel.from_pretrained(model, spec.init_adapter, is_trainable=True), None


def longest_prompt_tokens(prompts: list[Any], tokenizer: PreTrainedTokenizerBase, sample: int = 512) -> int:
    """Tokens of the longest of (up to ``sample``) prompts, plain or chat; what GRPO's sequences start with."""
    texts = [p if isinstance(p, str) else "\n".join(str(m.get("content", "")) for m in p) for p in prompts[:sample]]
    chat_overhead = 0 if all(isinstance(p, str) for p in prompts[:sample]) else 32  # role headers of a chat template
    return max((len(tokenizer(text)["input_ids"]) for text in texts), default=0) + chat_overhead


def drop_reference_adapter(model: object) -> None:
    """Delete TRL's frozen "ref" adapter so only the trained one is saved."""
    config = getattr(model, "peft_config", None)
    if isinstance(model, PeftModel) and config and REFERENCE_ADAPTER in config:
        model.delete_adapter(REFERENCE_ADAPTER)
