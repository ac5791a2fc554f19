"""Merge a LoRA adapter into its base model and save it as a standalone model, then verify it.

The base loads in its own dtype (``dtype="auto"``: what its config.json says), unquantised: a QLoRA
adapter, trained against a 4-bit base, merges into the de-quantised weights, which is the only base
that can hold the merged weights; the model card says so. Before the merge, base + adapter answer the
fixed prompts of ``trainer.export.verify``; after it, a fresh process loads the saved directory and
answers them again. The merged directory is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from trainer.export.files import CARD_FILE
from trainer.export.verify import greedy_traces, save_traces
from trainer.model_loading import detect_device, load_tokenizer
from trainer.protocol import ARTIFACT, DONE, EVAL, STARTED, ExportSpec, ModelSource
from trainer.run_events import EventSink

VERIFY_TIMEOUT_S = 3600
QLORA_NOTE = (
    "This adapter was trained against the 4-bit (QLoRA) quantised base. It was merged into the "
    "de-quantised base (the original {dtype} weights), the only form that can hold merged weights, "
    "so answers may differ slightly from the 4-bit base + adapter used during training."
)


def tokenizer_source(adapter_dir: Path, base: ModelSource) -> ModelSource:
    """Training saves the tokenizer next to the adapter (its pad token, its chat template): prefer that one."""
    return ModelSource(str(adapter_dir)) if (adapter_dir / "tokenizer_config.json").is_file() else base


def load_adapted(base: ModelSource, adapter_dir: Path, device: str) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    kwargs: dict[str, Any] = {"dtype": "auto", "revision": base.revision}
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(base.source, **kwargs)
    if getattr(model.config, "quantization_config", None):
        raise ValueError(f"the base {base.source} is a quantised checkpoint; a merge needs its unquantised weights")
    adapted = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    return adapted, load_tokenizer(tokenizer_source(adapter_dir, base))


def save_merged(adapted: PeftModel, tokenizer: PreTrainedTokenizerBase, target: Path, card: str | None) -> str:
    """Merge, save weights (safetensors), config, generation config and tokenizer; returns the dtype."""
    merged = adapted.merge_and_unload()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(partial, safe_serialization=True)  # the generation config comes along
    tokenizer.save_pretrained(partial)
    if card is not None:
        (partial / CARD_FILE).write_text(card, encoding="utf-8")
    os.replace(partial, target)
    return str(merged.dtype).removeprefix("torch.")


def merge_only(base: ModelSource, adapter_dir: Path, target: Path, device: str) -> str:
    """A merged copy to serve (servers that cannot load adapters); no card, no verification."""
    adapted, tokenizer = load_adapted(base, adapter_dir, device)
    dtype = save_merged(adapted, tokenizer, target, None)
    del adapted
    _free_memory()
    return dtype


def run_merge(spec: ExportSpec, events: EventSink) -> bool:
    assert spec.base is not None, "trainer.export.process checked the spec"
    device = detect_device(spec.device)
    if device.kind == "cpu" and spec.cpu_threads:
        torch.set_num_threads(spec.cpu_threads)
    events.emit(
        STARTED, run_id=spec.run_id, action="merge", device=device.kind, device_name=device.name, base=spec.base.source, adapter=spec.source
    )
    adapted, tokenizer = load_adapted(spec.base, Path(spec.source), device.kind)
    reference_path = Path(spec.run_dir) / "verify" / "reference.pt"
    save_traces(greedy_traces(adapted, tokenizer, spec.max_new_tokens), reference_path)
    dtype = save_merged(adapted, tokenizer, spec.merged_dir, spec.model_card or None)
    events.emit(ARTIFACT, kind="model", path=str(spec.merged_dir))
    del adapted
    _free_memory()  # the verifier loads its own copy, on the same GPU when there is one

    result = _verify_in_fresh_process(spec, reference_path, device.kind)
    result.update(dtype=dtype, qlora=spec.training_mode == "qlora")
    result_path = Path(spec.run_dir) / "verification.json"
    result_path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    reference_path.unlink(missing_ok=True)  # logits of the whole vocabulary: megabytes nobody needs now
    _append_card_notes(spec.merged_dir / CARD_FILE, result)
    events.emit(
        EVAL, step=0, max_logit_diff=result["max_logit_diff"], prompts_matched=result["prompts_matched"], verified=result["verified"]
    )
    events.emit(ARTIFACT, kind="verification", path=str(result_path))
    events.emit(
        DONE,
        action="merge",
        merged_dir=str(spec.merged_dir),
        verified=result["verified"],
        max_logit_diff=result["max_logit_diff"],
        dtype=dtype,
    )
    return True


def _verify_in_fresh_process(spec: ExportSpec, reference: Path, device: str) -> dict[str, Any]:
    result = Path(spec.run_dir) / "verify" / "result.json"
    command = [
        sys.executable,
        "-m",
        "trainer.export.verify",
        str(spec.merged_dir),
        str(reference),
        str(result),
        str(spec.max_new_tokens),
        device,
    ]
    print(f"verifying the export in a fresh process: {' '.join(command[1:])}", flush=True)
    # Same stdout/stderr (the run's log) and the same process group, so a cancel reaches it too.
    completed = subprocess.run(command, timeout=VERIFY_TIMEOUT_S, check=False)
    if completed.returncode != 0 or not result.is_file():
        raise RuntimeError(f"the verification process failed (exit status {completed.returncode}); see the log above")
    return json.loads(result.read_text(encoding="utf-8"))


def _append_card_notes(card: Path, result: dict[str, Any]) -> None:
    if not card.is_file():
        return
    notes = [
        card.read_text(encoding="utf-8").rstrip(),
        "",
        "## Merge and verification",
        "",
        f"The LoRA adapter was merged into the base weights in {result['dtype']}, the base's own dtype.",
    ]
    if result["qlora"]:
        notes += ["", QLORA_NOTE.format(dtype=result["dtype"])]
    verdict = "**verified**" if result["verified"] else "**NOT verified: the merged model answers differently**"
    notes += [
        "",
        f"The saved model, loaded in a fresh process, answered {result['prompts']} fixed prompts greedily: "
        f"{result['prompts_matched']}/{result['prompts']} token-for-token identical to base + adapter, "
        f"largest logit difference {result['max_logit_diff']:.3g}; {verdict}.",
        "",
    ]
    card.write_text("\n".join(notes), encoding="utf-8")


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
