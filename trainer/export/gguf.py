"""GGUF export for llama.cpp, Ollama and LM Studio: merge, convert with llama.cpp's tools, verify, write Modelfiles.

An adapter merges into its base as ``trainer.export.merge`` does (its own dtype, a QLoRA adapter into the
de-quantised base) in ``<run_dir>/gguf/merged``, removed once converted; a model exports as it is. Before
anything is written, base + adapter (or the model) answer the fixed prompts: the reference every file is
verified against (``trainer.export.gguf_verify``). Each type lands in ``<run_dir>/gguf/<type>/`` with its
``Modelfile`` (``trainer.export.modelfile``), and ``ollama create`` runs when ``ollama`` is on PATH.
``verification.json`` in the run folder holds, per type, the file, its size and time, the verification
numbers and the Ollama command.
"""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import gguf
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from trainer.export.gguf_convert import Written, convert, quantize
from trainer.export.gguf_verify import Reference, compare_gguf, load_gguf, take_reference
from trainer.export.merge import load_adapted, save_merged
from trainer.export.modelfile import (
    MODELFILE,
    chat_template,
    chat_turns,
    modelfile_text,
    ollama_name,
    parameters,
    stop_words,
    text_template,
)
from trainer.model_loading import detect_device, load_tokenizer
from trainer.protocol import ARTIFACT, DONE, EVAL, GGUF_CONVERTER_TYPES, PROGRESS, STARTED, ExportSpec, ModelSource
from trainer.run_events import EventSink

OLLAMA_TIMEOUT_S = 1800
CONVERTER_LOG = "convert.log"


def run_gguf(spec: ExportSpec, events: EventSink) -> bool:
    device = detect_device(spec.device)
    if device.kind == "cpu" and spec.cpu_threads:
        torch.set_num_threads(spec.cpu_threads)
    source = Path(spec.source)
    adapter = (source / "adapter_config.json").is_file()
    events.emit(
        STARTED,
        run_id=spec.run_id,
        action="gguf",
        device=device.kind,
        types=list(spec.gguf_types),
        base=spec.base.source if spec.base else None,
        source=str(source),
    )
    steps, step = 1 + 2 * len(spec.gguf_types), 0
    spec.gguf_dir.mkdir(parents=True, exist_ok=True)
    model_dir, reference, tokenizer, generation = _reference(spec, source, adapter, device.kind)
    step += 1
    events.emit(PROGRESS, step=step, total_steps=steps)

    written: dict[str, Written] = {}
    log = spec.gguf_dir / CONVERTER_LOG
    try:
        for gguf_type in _in_writing_order(spec.gguf_types):
            target = spec.gguf_dir / gguf_type / f"{spec.name}-{gguf_type}.gguf"
            if gguf_type in GGUF_CONVERTER_TYPES:
                written[gguf_type] = convert(model_dir, target, gguf_type, log)
            else:
                written[gguf_type] = quantize(_sixteen_bit(spec, model_dir, written, log), target, gguf_type, log)
            events.emit(ARTIFACT, kind="gguf", path=str(target))
            step += 1
            events.emit(PROGRESS, step=step, total_steps=steps)
    finally:
        if adapter:  # the merged copy was only the converter's input: gigabytes nobody asked for
            shutil.rmtree(spec.gguf_dir / "merged", ignore_errors=True)
        shutil.rmtree(spec.gguf_dir / "intermediate", ignore_errors=True)

    results = []
    for gguf_type in spec.gguf_types:
        result = _verify(reference, written[gguf_type], spec.max_new_tokens, device.kind)
        result.update(_ollama(spec, written[gguf_type], tokenizer, generation))
        results.append(result)
        step += 1
        events.emit(PROGRESS, step=step, total_steps=steps)
    verdict = {"action": "gguf", "verified": all(r["verified"] for r in results), "types": results}
    spec.verification_path.write_text(json.dumps(verdict, indent=2), encoding="utf-8")
    events.emit(EVAL, step=0, **{f"{r['type']}.{key}": r[key] for r in results for key in ("token_agreement", "max_logit_diff")})
    events.emit(ARTIFACT, kind="verification", path=str(spec.verification_path))
    events.emit(
        DONE,
        action="gguf",
        verified=verdict["verified"],
        files=[
            {key: r[key] for key in ("type", "path", "size_bytes", "verified", "token_agreement", "max_logit_diff", "ollama_command")}
            for r in results
        ],
    )
    return True


def _reference(spec: ExportSpec, source: Path, adapter: bool, device: str) -> tuple[Path, Reference, PreTrainedTokenizerBase, dict]:
    """(the folder to convert, the reference answers, the tokenizer training used, the generation config)."""
    if adapter:
        assert spec.base is not None, "trainer.export.process checked the spec"
        model, tokenizer = load_adapted(spec.base, source, device)
    else:
        kwargs: dict[str, Any] = {"dtype": "auto"} | ({"device_map": {"": 0}} if device == "cuda" else {})
        model, tokenizer = AutoModelForCausalLM.from_pretrained(source, **kwargs).eval(), load_tokenizer(ModelSource(str(source)))
    reference = take_reference(model, tokenizer, spec.max_new_tokens)
    generation = model.generation_config.to_dict()
    model_dir = source
    if adapter:
        model_dir = spec.gguf_dir / "merged"
        save_merged(model, tokenizer, model_dir, None)
    del model
    _free_memory()
    return model_dir, reference, tokenizer, generation


def _in_writing_order(types: tuple[str, ...]) -> list[str]:
    """The converter's types first: a k-quant is made from a 16-bit file that may be one of them."""
    return sorted(types, key=lambda t: t not in GGUF_CONVERTER_TYPES)


def _sixteen_bit(spec: ExportSpec, model_dir: Path, written: dict[str, Written], log: Path) -> Path:
    """llama-quantize's input: a requested bf16 or f16 file, else an f16 one written for it alone."""
    for kind in ("bf16", "f16"):
        if kind in written:
            return written[kind].path
    target = spec.gguf_dir / "intermediate" / f"{spec.name}-f16.gguf"
    if not target.is_file():
        convert(model_dir, target, "f16", log)
    return target


def _verify(reference: Reference, file: Written, max_new_tokens: int, device: str) -> dict[str, Any]:
    started = time.monotonic()
    model, tokenizer = load_gguf(file.path, reference.dtype, device)
    result = compare_gguf(reference, model, tokenizer, file.gguf_type, max_new_tokens)
    del model
    _free_memory()
    print(
        f"verification of {file.path.name}: {result['tokens_agreed']}/{result['tokens']} tokens agree teacher-forced, "
        f"{result['prompts_matched']}/{result['prompts']} answers identical, max logit difference "
        f"{result['max_logit_diff']:.3g}",
        flush=True,
    )
    return {
        **result,
        "path": str(file.path),
        "size_bytes": file.size_bytes,
        "convert_seconds": file.seconds,
        "verify_seconds": round(time.monotonic() - started, 2),
    }


def _ollama(spec: ExportSpec, file: Written, tokenizer: PreTrainedTokenizerBase, generation: dict[str, Any]) -> dict[str, Any]:
    """Write the Modelfile beside the file; ``ollama create`` it when Ollama is installed."""
    system = None
    if spec.prompt_format == "text":
        template = text_template(spec.input_template)
        how = (
            f"Trained on raw-text prompts: the input template {spec.input_template!r} filled in (TEMPLATE wraps a "
            "one-field prompt in it; otherwise send the template filled in)."
            if spec.input_template
            else "Trained on raw text: TEMPLATE passes the prompt as it is."
        )
    else:
        turns = chat_turns(
            lambda messages, generate: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generate),
            tokenizer.bos_token,
            _adds_bos(file.path),
        )
        template, system = chat_template(turns), turns.default_system
        how = "Prompted in chat turns, as in training: TEMPLATE renders them as the model's chat template does."
    name = ollama_name(spec.name, file.gguf_type)
    modelfile = file.path.parent / MODELFILE
    command = f"ollama create {name} -f {modelfile}"
    note = f"{spec.name} ({file.gguf_type}), exported by ftapp run {spec.run_id}.\n{how}\nCreate it: {command}"
    modelfile.write_text(
        modelfile_text(file.path.name, template, stop_words(tokenizer, generation), parameters(generation), system, note), encoding="utf-8"
    )
    return {"modelfile": str(modelfile), "ollama_name": name, "ollama_command": command, **_create_in_ollama(name, modelfile)}


def _adds_bos(path: Path) -> bool:
    """Whether llama.cpp prepends BOS to this file's prompts (the converter copies the tokenizer's setting)."""
    field = gguf.GGUFReader(path).fields.get("tokenizer.ggml.add_bos_token")
    return bool(field.contents()) if field is not None else False


def _create_in_ollama(name: str, modelfile: Path) -> dict[str, Any]:
    tool = shutil.which("ollama")
    if tool is None:
        return {"ollama_created": False, "ollama_note": "ollama is not on PATH here: run the command where it is"}
    completed = subprocess.run(
        [tool, "create", name, "-f", str(modelfile)],
        cwd=modelfile.parent,
        capture_output=True,
        text=True,
        timeout=OLLAMA_TIMEOUT_S,
        check=False,
    )
    print(completed.stdout + completed.stderr, flush=True)
    if completed.returncode != 0:  # the GGUF and its Modelfile stand on their own; a stopped Ollama server is no failed export
        return {
            "ollama_created": False,
            "ollama_note": f"ollama create failed ({completed.returncode}): {(completed.stderr or completed.stdout).strip()[-300:]}",
        }
    return {"ollama_created": True, "ollama_note": f"created in Ollama as {name}"}


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
