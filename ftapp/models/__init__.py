"""Base models and adapters: register (Hub, folder, MLflow registry), look up, remove (MD-, AD-).

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""

from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest

__all__ = [
    "AddAdapterRequest",
    "AddModelRequest",
]
