"""Shipping: export (merge, archive, register, push, GGUF), serving, cluster bundles, model cards (EX-, BU-).

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""

from ftapp.shipping.bundles import BundleRequest, BundleService
from ftapp.shipping.export_request import ExportRequest
from ftapp.shipping.export_results import ExportResult, GgufFile
from ftapp.shipping.gguf_request import detect_gguf_tools, offered_types
from ftapp.shipping.serve_request import ENGINE_CHOICES, ServeRequest, vllm_installed
from ftapp.shipping.serving import Endpoint, EndpointState
from trainer.protocol import GGUF_TYPES

__all__ = [
    "BundleRequest",
    "BundleService",
    "Endpoint",
    "EndpointState",
    "ENGINE_CHOICES",
    "ExportRequest",
    "ExportResult",
    "detect_gguf_tools",
    "GGUF_TYPES",
    "GgufFile",
    "offered_types",
    "ServeRequest",
    "vllm_installed",
]
