"""The Compare playground: one prompt, a base model and its adapters (CP-).

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""

from ftapp.compare.answers import CompareSnapshot
from ftapp.compare.request import MAX_ADAPTERS, TIE, CompareRequest
from ftapp.compare.service import Vote
from ftapp.compare.workers import Worker

__all__ = [
    "CompareRequest",
    "CompareSnapshot",
    "MAX_ADAPTERS",
    "TIE",
    "Vote",
    "Worker",
]
