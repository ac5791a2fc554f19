"""SQLite storage: tables, migrations, transactions. Records leave as frozen dataclasses.

Imports nothing of the project.
"""

from storage.database import Database, Transaction
from storage.errors import DuplicateError, MissingReferenceError, NotOwnedError, SnapshotError, StorageError
from storage.records import (
    AdapterRecord,
    ArtifactRecord,
    ComparisonVoteRecord,
    ConfigRecord,
    DatasetRecord,
    EvaluationAnswerRecord,
    EvaluationCombinationRecord,
    EvaluationScoreRecord,
    EvaluationVerdictRecord,
    MetricPointRecord,
    ModelRecord,
    PromptRecord,
    RunRecord,
    TrainingPresetRecord,
)

__all__ = [
    "AdapterRecord",
    "ArtifactRecord",
    "ComparisonVoteRecord",
    "ConfigRecord",
    "Database",
    "DatasetRecord",
    "EvaluationAnswerRecord",
    "EvaluationCombinationRecord",
    "EvaluationScoreRecord",
    "EvaluationVerdictRecord",
    "DuplicateError",
    "MetricPointRecord",
    "MissingReferenceError",
    "NotOwnedError",
    "ModelRecord",
    "PromptRecord",
    "RunRecord",
    "SnapshotError",
    "StorageError",
    "TrainingPresetRecord",
    "Transaction",
]
