"""The run contract of export and serving runs: ``ExportSpec`` and ``ServeSpec``. Standard library only.

Import them from ``trainer.protocol``, which re-exports them (ftapp may import nothing else of the
trainer) and reads them in ``read_run_spec`` by the spec's ``kind`` field like every other run spec.
This module builds on ``trainer.protocol``, so importing it first is an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.protocol.core import AUTO_DEVICE, PROTOCOL_VERSION, ModelSource, RunSpecFile, _checked_fields

EXPORT_ACTIONS = ("merge", "archive", "register", "push", "gguf")
# GGUF file types: what llama.cpp's converter writes itself, and the k-quants its ``llama-quantize`` makes from a
# 16-bit file (only where that tool is installed: the converter cannot write them).
GGUF_CONVERTER_TYPES = ("f16", "bf16", "q8_0")
GGUF_K_QUANTS = ("q2_k", "q3_k_m", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")
GGUF_TYPES = GGUF_CONVERTER_TYPES + GGUF_K_QUANTS
# How a model answers what it was trained on: ``chat`` turns through the tokenizer's chat template, or ``text``:
# raw text through the tokenizer (an adapter trained on a prompt's templates; ``input_template`` makes its prompt).
PROMPT_FORMATS = ("chat", "text")


@dataclass(frozen=True)
class ExportSpec(RunSpecFile):
    """``python -m trainer export``: ship one adapter or model directory (``source``).

    * ``merge``: load ``base`` in its own dtype (a QLoRA adapter merges into the de-quantised base),
      merge the adapter, save safetensors + tokenizer + generation config + ``model_card`` as README.md
      under ``<run_dir>/merged``, then verify it in a fresh process against base + adapter;
    * ``archive``: ``<run_dir>/<name>.tar.gz`` of ``source`` with the model card;
    * ``register``: log ``source`` to MLflow and register it as a version of ``name``;
    * ``push``: create the Hub repo ``repo_id`` (private by default) and upload ``source`` with the card;
    * ``gguf``: merge like ``merge`` (or take ``source`` as it is, a model), convert it with llama.cpp's converter
      to each of ``gguf_types`` under ``<run_dir>/gguf/<type>/`` beside an Ollama ``Modelfile`` that prompts
      the way the adapter was trained (``prompt_format``, ``input_template``), then load every file back with
      transformers' GGUF loader and compare its answers and logits with base + adapter's.

    The HF token travels in the environment only. Events: ``started``, ``eval`` (merge: the
    verification numbers), ``artifact`` per file written, ``done`` with what was published.
    """

    run_id: str
    run_dir: str
    action: str  # one of EXPORT_ACTIONS
    source: str  # an adapter directory (adapter_config.json) or a model directory (config.json)
    name: str  # merged model / registered model / archive name
    model_card: str = ""  # README.md text rendered by ftapp (secrets redacted); "" keeps the source's README.md
    base: ModelSource | None = None  # the adapter's base model: merged into, or referenced by the registry entry
    training_mode: str | None = None  # lora | qlora: how the adapter was trained, for the merge notes
    repo_id: str | None = None  # push: "name" or "owner/name"
    archive_dir: str | None = None  # archive: where <name>.tar.gz goes (default: the run directory)
    private: bool = True
    max_new_tokens: int = 16  # merge verification: greedy tokens per fixed prompt
    device: str = AUTO_DEVICE
    cpu_threads: int | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "ftapp-export"
    gguf_types: tuple[str, ...] = ()  # gguf: GGUF_TYPES to write, each verified
    prompt_format: str = "chat"  # gguf: one of PROMPT_FORMATS, for the Modelfile's TEMPLATE
    input_template: str | None = None  # gguf, text: the prompt's input template ({column} fields), None: free text
    kind: str = "export"
    protocol_version: int = PROTOCOL_VERSION

    verb = "export"

    @property
    def merged_dir(self) -> Path:
        return Path(self.run_dir) / "merged"

    @property
    def archive_path(self) -> Path:
        return Path(self.archive_dir or self.run_dir) / f"{self.name}.tar.gz"

    @property
    def gguf_dir(self) -> Path:
        return Path(self.run_dir) / "gguf"

    @property
    def verification_path(self) -> Path:
        return Path(self.run_dir) / "verification.json"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportSpec:
        values = _checked_fields(cls, data)
        values["base"] = ModelSource(**data["base"]) if data.get("base") else None
        values["gguf_types"] = tuple(data.get("gguf_types") or ())
        return cls(**values)


SERVE_ENGINES = ("transformers", "vllm")


@dataclass(frozen=True)
class ServeSpec(RunSpecFile):
    """``python -m trainer serve``: an OpenAI-compatible endpoint on ``host`` run by an existing server.

    ``transformers serve`` (no adapters, no API key: an adapter is merged into ``<run_dir>/merged``
    first) or ``vllm serve`` (adapters through ``--lora-modules``; the bearer token is read from
    ``api_key_file`` and handed over in ``VLLM_API_KEY``, never on a command line). The server is a
    child in the run's process group, so the supervisor's SIGTERM reaches it. Events: ``started
    {url, served_model, engine, auth, server_pid}`` once it answers ``/health``; ``done {stopped}``
    after a stop. Clients reach the server through the request guard, whose address ``started`` reports.
    """

    run_id: str
    run_dir: str
    model: ModelSource
    served_name: str  # the "model" field clients send
    adapter_path: str | None = None
    engine: str = "transformers"  # one of SERVE_ENGINES
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port chosen when the server starts
    api_key_file: str | None = None
    startup_timeout_s: float = 900.0
    device: str = AUTO_DEVICE
    cpu_threads: int | None = None
    # The request guard in front of the server (trainer.inference.serve_guard): per request at most
    # max_request_bytes, max_tokens completion tokens and request_timeout_s of generation; max_concurrent
    # generating (0: the engine's default, 1 for transformers serve) and max_queue waiting, 429 beyond.
    max_request_bytes: int = 1 << 20
    max_tokens: int = 1024
    request_timeout_s: float = 120.0
    max_concurrent: int = 0
    max_queue: int = 32
    # How the adapter was trained to be prompted (ftapp shows clients the call that reproduces it): ``text`` is
    # /v1/completions with ``input_template`` filled in, ``chat`` is /v1/chat/completions.
    prompt_format: str = "chat"
    input_template: str | None = None
    example_prompt: str | None = None  # text: a training row as the client sends it, for the curl
    kind: str = "serve"
    protocol_version: int = PROTOCOL_VERSION

    verb = "serve"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServeSpec:
        values = _checked_fields(cls, data)
        values["model"] = ModelSource(**data["model"])
        return cls(**values)
