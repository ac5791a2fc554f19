"""A serve request (an OpenAI-compatible endpoint for a model, or a base model + adapter) and its rules.

It shares the export rules: the model (EX-001, EX-005), the adapter (EX-002, EX-004, EX-006), the
devices (EX-009); and has one of its own, the engine (EX-010). ``auto`` picks vLLM when it is
installed (it serves adapters natively and enforces an API key), ``transformers serve`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec

from ftapp.device_choice import choose_devices
from ftapp.errors import Problem
from ftapp.export_request import resolve_adapter, resolve_model
from ftapp.machine import Machine
from storage import Transaction
from trainer.protocol import SERVE_ENGINES

ENGINE_CHOICES = ("auto", *SERVE_ENGINES)


@dataclass(frozen=True)
class ServeRequest:
    model_id: str
    adapter_id: str = ""
    gpus: str = "auto"
    engine: str = "auto"  # auto | transformers | vllm


def vllm_installed() -> bool:
    return find_spec("vllm") is not None  # a look-up only: importing vllm would cost seconds and a CUDA context


def chosen_engine(engine: str, has_vllm: bool) -> str:
    return ("vllm" if has_vllm else "transformers") if engine == "auto" else engine


def validate_serve(tx: Transaction, request: ServeRequest, machine: Machine, has_vllm: bool) -> list[Problem]:
    problems: list[Problem] = []
    model = resolve_model(tx, request.model_id, needs_weights=True, problems=problems)
    if request.adapter_id:
        resolve_adapter(tx, request.adapter_id, model, problems)
    problems += choose_devices(request.gpus, machine, "EX-009")[1]
    if request.engine not in ENGINE_CHOICES:
        problems.append(Problem("EX-010", f"engine must be one of {', '.join(ENGINE_CHOICES)} (got {request.engine!r})", "engine"))
    elif request.engine == "vllm" and not has_vllm:
        problems.append(Problem("EX-010", "engine vllm is not installed in this environment (pip install vllm), "
                                          "or choose transformers", "engine"))
    return problems
