"""Shipping: export (merge, archive, register, push), serving, cluster bundles, model cards (EX-, BU-).

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""

from ftapp.shipping.bundles import BundleRequest, BundleService
from ftapp.shipping.export_request import ExportRequest
from ftapp.shipping.export_results import ExportResult
from ftapp.shipping.serve_request import ENGINE_CHOICES, ServeRequest, vllm_installed
from ftapp.shipping.serving import Endpoint

__all__ = [
    "BundleRequest",
    "BundleService",
    "Endpoint",
    "ENGINE_CHOICES",
    "ExportRequest",
    "ExportResult",
    "ServeRequest",
    "vllm_installed",
]
