"""How the GGUF export drives llama.cpp's tools: the command lines, the rename of a finished file, a failure's reason."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trainer.export import gguf_convert
from trainer.export.gguf import _in_writing_order
from trainer.export.process import check_gguf_spec
from trainer.protocol import ExportSpec


def tool(folder: Path, script: str) -> Path:
    """A stand-in ``llama-quantize`` on PATH: llama.cpp is not packaged for this machine's distribution."""
    path = folder / gguf_convert.QUANTIZE_TOOL
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_a_k_quant_is_made_by_llama_quantize_from_a_16_bit_file_and_renamed_when_complete(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool(bin_dir, 'echo "$@" > "$(dirname "$2")/args"; cp "$1" "$2"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    source = tmp_path / "m-f16.gguf"
    source.write_bytes(b"GGUF" + b"\0" * 60)
    written = gguf_convert.quantize(source, tmp_path / "out" / "m-q4_k_m.gguf", "q4_k_m", tmp_path / "log")
    assert written.path.read_bytes() == source.read_bytes() and written.size_bytes == 64
    assert (tmp_path / "out" / "args").read_text().split() == [str(source), str(written.path) + ".partial", "Q4_K_M"]
    assert _in_writing_order(("q4_k_m", "q8_0", "f16")) == ["q8_0", "f16", "q4_k_m"]  # the 16-bit file first


def test_a_failing_tool_leaves_no_file_and_says_why(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool(bin_dir, 'echo "main: loading model"; echo "llama_model_quantize: failed to quantize: unknown type"; touch "$2"; exit 1\n')
    monkeypatch.setenv("PATH", str(bin_dir))
    target = tmp_path / "m-q5_k_m.gguf"
    with pytest.raises(RuntimeError, match="llama-quantize failed to write q5_k_m .*failed to quantize: unknown type"):
        gguf_convert.quantize(tmp_path / "m-f16.gguf", target, "q5_k_m", tmp_path / "log")
    assert not target.exists() and not target.with_name(target.name + ".partial").exists()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="needs llama.cpp's llama-quantize on PATH"):
        gguf_convert.quantize(tmp_path / "m-f16.gguf", target, "q4_k_m", tmp_path / "log")
    with pytest.raises(ValueError, match="the converter writes"):
        gguf_convert.convert(tmp_path, target, "q4_k_m", tmp_path / "log")


def test_gguf_specs_that_cannot_run_are_refused(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    base = dict(run_id="r", run_dir=str(tmp_path), action="gguf", source=str(model), name="m")
    check_gguf_spec(ExportSpec(gguf_types=("f16", "q8_0"), **base))
    for types in ((), ("f16", "f16"), ("q9",)):
        with pytest.raises(ValueError, match="spec.gguf_types"):
            check_gguf_spec(ExportSpec(gguf_types=types, **base))
    with pytest.raises(ValueError, match="prompt_format"):
        check_gguf_spec(ExportSpec(gguf_types=("f16",), prompt_format="markdown", **base))
    (model / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="neither a LoRA adapter"):
        check_gguf_spec(ExportSpec(gguf_types=("f16",), **base))


def test_ollama_create_runs_when_ollama_is_on_path_and_its_failure_is_noted_not_fatal(tmp_path, monkeypatch):
    from trainer.export.gguf import _create_in_ollama

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ollama = bin_dir / "ollama"
    ollama.write_text(
        '#!/bin/sh\necho "$@" > "$PWD/ollama-args"\n[ "$2" = "broken:f16" ] && { echo "Error: could not connect" >&2; exit 1; }\nexit 0\n'
    )
    ollama.chmod(0o755)
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM ./m.gguf\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert _create_in_ollama("m:f16", modelfile) == {"ollama_created": True, "ollama_note": "created in Ollama as m:f16"}
    assert (tmp_path / "ollama-args").read_text().split() == ["create", "m:f16", "-f", str(modelfile)]
    failed = _create_in_ollama("broken:f16", modelfile)
    assert failed["ollama_created"] is False and "could not connect" in failed["ollama_note"]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert _create_in_ollama("m:f16", modelfile)["ollama_created"] is False
