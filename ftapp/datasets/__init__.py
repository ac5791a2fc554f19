"""Datasets: import (file, folder, Hub), read and validate rows (DS-), preview, statistics.

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""

from ftapp.datasets.files import FILE_TYPES, accepted_files, type_label
from ftapp.datasets.service import DATASET_TYPES, AddDatasetRequest

__all__ = [
    "AddDatasetRequest",
    "DATASET_TYPES",
    "FILE_TYPES",
    "accepted_files",
    "type_label",
]
