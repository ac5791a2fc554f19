"""Import a GGUF file as a base model: de-quantize it into an ordinary ``save_pretrained`` folder.

transformers reads GGUF (``from_pretrained(folder, gguf_file=NAME)``, with the ``gguf`` package
installed) and de-quantizes every tensor while loading; the folder written here holds safetensors,
config, tokenizer and chat template, so training, evaluation, export and serving load it like any
other local model and never see GGUF again.

Layout of the folder::

    config.json, model.safetensors, generation_config.json, tokenizer files, chat template
    gguf_source.json   where it came from (path, size, sha256, quantization), written last: its
                       presence marks a finished import

The folder is written into a hidden sibling and renamed into place, so an interrupted import leaves
nothing that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gguf
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

SOURCE_FILE = "gguf_source.json"
GGUF_MAGIC = b"GGUF"
# What the de-quantized weights are saved in, by the file's GGUF type: 16-bit files keep their precision;
# quantized blocks de-quantize to float32 exactly, and stay exact. Rounding them to bfloat16 would halve the
# disk (270 MB instead of 540 MB for 135M parameters) but made a merged LoRA on SmolLM2-135M answer one of
# the export check's four prompts differently (bf16 merge rounding, max logit difference 0.875).
_SAVE_DTYPES = {"MOSTLY_F16": torch.float16, "MOSTLY_BF16": torch.bfloat16}
_DEFAULT_SAVE_DTYPE = torch.float32
_PACKED_MODULE_PREFIX = "Gguf"  # GgufLinear, GgufEmbedding, GgufExperts: modules that keep GGUF blocks


@dataclass(frozen=True)
class GgufImport:
    """The imported folder and what was detected in the file."""

    model_dir: str
    architecture: str
    model_type: str  # the family: llama, qwen2, mistral, ...
    num_parameters: int
    chat_template: bool
    quantization: str  # the GGUF file type, e.g. MOSTLY_Q4_1
    dtype: str  # what the weights were saved in
    gguf_name: str
    license: str | None
    source_file: str
    source_bytes: int
    source_sha256: str
    seconds: float

    def to_json(self) -> str:
        """One line of JSON: the ``python -m trainer import-gguf`` result."""
        return json.dumps(asdict(self), sort_keys=True)


def import_request(request_path: str) -> GgufImport:
    """``python -m trainer import-gguf REQUEST``: a JSON file ``{"gguf_file": ..., "out_dir": ...}``."""
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    return import_gguf(Path(request["gguf_file"]), Path(request["out_dir"]))


def import_gguf(gguf_file: Path, out_dir: Path) -> GgufImport:
    """De-quantize ``gguf_file`` into ``out_dir`` (absent or empty)."""
    started = time.monotonic()
    gguf_file, out_dir = Path(gguf_file).resolve(), Path(out_dir).resolve()
    metadata = read_metadata(gguf_file)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"import folder is not empty: {out_dir}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's private 0700 would otherwise become the folder's mode
        found = _convert_into(gguf_file, staging, metadata)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return GgufImport(model_dir=str(out_dir), seconds=round(time.monotonic() - started, 2), **found)


def read_metadata(gguf_file: Path) -> dict[str, Any]:
    """The header fields that name the model: architecture, name, licence, file type."""
    with open(gguf_file, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ValueError(f"{gguf_file} is not a GGUF file (it does not start with the GGUF magic bytes)")
    reader = gguf.GGUFReader(gguf_file)

    def field(key: str) -> Any:
        value = reader.fields.get(key)
        return value.contents() if value is not None else None

    file_type = field("general.file_type")
    return {
        "architecture": field("general.architecture") or "",
        "name": field("general.name") or gguf_file.stem,
        "license": field("general.license"),
        "file_type": gguf.LlamaFileType(file_type).name if file_type is not None else "unknown",
    }


def drop_spent_quantizer(model: PreTrainedModel) -> None:
    """Detach the GGUF quantizer once nothing is packed any more.

    transformers 5 keeps its GGUF quantizer on the model after de-quantizing every tensor and then
    refuses ``save_pretrained`` ("quantized with gguf and is not serializable"). When no module
    still holds GGUF blocks and every parameter is a float tensor, the weights are plain and the
    quantizer (and the config's quantization_config, which would make loaders look for it) can go.
    """
    if getattr(model, "hf_quantizer", None) is None:
        return
    packed = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.startswith(_PACKED_MODULE_PREFIX)})
    not_float = sorted({str(p.dtype) for p in model.parameters() if not p.dtype.is_floating_point})
    if packed or not_float:
        raise RuntimeError(
            f"the GGUF weights were not fully de-quantized (packed modules {packed}, dtypes {not_float}); "
            "cannot save them as a plain checkpoint"
        )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _convert_into(gguf_file: Path, folder: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    drop_spent_quantizer(model)
    dtype = _SAVE_DTYPES.get(metadata["file_type"], _DEFAULT_SAVE_DTYPE)
    model = model.to(dtype)
    if model.generation_config.pad_token_id is None:  # batched generation needs one; GGUF files name it in the tokenizer
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    source = {"source_file": str(gguf_file), "source_bytes": gguf_file.stat().st_size, "source_sha256": _sha256(gguf_file)}
    found = {
        "architecture": type(model).__name__,
        "model_type": model.config.model_type,
        "num_parameters": model.num_parameters(),
        "chat_template": bool(tokenizer.chat_template),
        "quantization": metadata["file_type"],
        "dtype": str(dtype).removeprefix("torch."),
        "gguf_name": metadata["name"],
        "license": metadata["license"],
        **source,
    }
    (folder / SOURCE_FILE).write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
