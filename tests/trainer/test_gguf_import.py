"""GGUF import details a real file does not exercise on purpose: the spent quantizer and files that are no GGUF.

The conversion of a real GGUF file (SmolLM2-135M-Instruct) is tested in tests/ftapp/test_real_model.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.quantizers.quantizer_gguf import GgufHfQuantizer
from transformers.utils.quantization_config import GgufConfig

from trainer.models.gguf_import import drop_spent_quantizer, import_gguf, read_metadata


def as_loaded_from_gguf(model_dir: Path):
    """A model as transformers 5 leaves it after de-quantizing a GGUF file: plain weights, the quantizer still attached."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.hf_quantizer = GgufHfQuantizer(GgufConfig())
    model.config.quantization_config = GgufConfig()
    return model


def test_a_spent_quantizer_is_dropped_so_the_plain_weights_save(demo_kit, tmp_path: Path):
    model = as_loaded_from_gguf(demo_kit.model_dir)
    with pytest.raises(ValueError, match="quantized with gguf and is not serializable"):
        model.save_pretrained(tmp_path / "refused")
    drop_spent_quantizer(model)
    model.save_pretrained(tmp_path / "saved")
    assert "quantization_config" not in json.loads((tmp_path / "saved" / "config.json").read_text())
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))


def test_weights_still_packed_are_never_saved_as_plain_ones(demo_kit):
    class GgufLinear(torch.nn.Module):  # what transformers swaps in where a weight stays in GGUF blocks
        pass

    model = as_loaded_from_gguf(demo_kit.model_dir)
    model.model.layers[0].mlp.down_proj = GgufLinear()
    with pytest.raises(RuntimeError, match=r"not fully de-quantized \(packed modules \['GgufLinear'\]"):
        drop_spent_quantizer(model)
    assert model.hf_quantizer is not None


def test_a_file_that_is_not_gguf_is_refused_before_any_folder_is_made(tmp_path: Path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ValueError, match="is not a GGUF file"):
        read_metadata(weights)
    with pytest.raises(ValueError, match="is not a GGUF file"):
        import_gguf(weights, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
