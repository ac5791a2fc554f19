"""The SQLite engine, migrations on open, and transactions that expose one repository per table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

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
    ModelRecord,
    PromptRecord,
    RunRecord,
    TrainingPresetRecord,
)
from storage.repository import MetricPointRepository, Repository
from storage.tables import (
    AdapterRow,
    ArtifactRow,
    ComparisonVoteRow,
    ConfigRow,
    DatasetRow,
    EvaluationAnswerRow,
    EvaluationCombinationRow,
    EvaluationScoreRow,
    EvaluationVerdictRow,
    ModelRow,
    PromptRow,
    RunRow,
    TrainingPresetRow,
)

MIGRATIONS = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_MS = 10_000


def _set_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the UI read while the supervisor writes; busy_timeout makes a second writer wait
    # instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(path: Path) -> Engine:
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _set_pragmas)
    return engine


def alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it already is."""
    if current_revision(engine) == head_revision():
        return
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Transaction:
    """One unit of work: every repository shares the session, so it commits or rolls back whole."""

    def __init__(self, session: Session, owner: str | None = None):
        self.session, self.owner = session, owner
        self.models = Repository(session, ModelRow, ModelRecord)
        self.datasets = Repository(session, DatasetRow, DatasetRecord, owner)
        self.prompts = Repository(session, PromptRow, PromptRecord, owner)
        self.configs = Repository(session, ConfigRow, ConfigRecord)
        self.runs = Repository(session, RunRow, RunRecord, owner)
        self.adapters = Repository(session, AdapterRow, AdapterRecord, owner)
        self.artifacts = Repository(session, ArtifactRow, ArtifactRecord)
        self.metric_points = MetricPointRepository(session)
        self.evaluation_combinations = Repository(session, EvaluationCombinationRow, EvaluationCombinationRecord)
        self.evaluation_answers = Repository(session, EvaluationAnswerRow, EvaluationAnswerRecord)
        self.evaluation_scores = Repository(session, EvaluationScoreRow, EvaluationScoreRecord)
        self.evaluation_verdicts = Repository(session, EvaluationVerdictRow, EvaluationVerdictRecord)
        self.comparison_votes = Repository(session, ComparisonVoteRow, ComparisonVoteRecord)
        self.training_presets = Repository(session, TrainingPresetRow, TrainingPresetRecord, owner)


class Database:
    def __init__(self, engine: Engine, owner: str | None = None, sessions: sessionmaker | None = None):
        self.engine, self.owner = engine, owner
        self._sessions = sessions or sessionmaker(bind=engine, expire_on_commit=False)

    def for_owner(self, owner: str) -> Database:
        """The same database as one demo visitor sees it: its own datasets, prompts, runs and adapters
        plus the shared ones (see ``Repository``). Closing the view is the root's business."""
        return Database(self.engine, owner, self._sessions)

    @classmethod
    def open(cls, path: Path) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(path)
        migrate(engine)
        return cls(engine)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        session = self._sessions()
        try:
            yield Transaction(session, self.owner)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()
