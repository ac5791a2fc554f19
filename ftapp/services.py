"""The composition of every service over one home directory and its database."""

from __future__ import annotations

from dataclasses import dataclass

from ftapp.compare.service import ComparisonService
from ftapp.datasets.service import DatasetService
from ftapp.demo.visitor import Visitor
from ftapp.demo_kit import DemoInstaller
from ftapp.evaluation.service import EvaluationService
from ftapp.models.adapters import AdapterService
from ftapp.models.service import ModelService
from ftapp.prompts.configs import ConfigService
from ftapp.prompts.service import PromptService
from ftapp.runs.machine import Machine, detect_machine
from ftapp.runs.service import RunService
from ftapp.runs.supervisor import Supervisor
from ftapp.runs.training_presets import TrainingPresetService
from ftapp.secrets import ApiKeys, HfToken
from ftapp.settings import Settings
from ftapp.shipping.exports import ExportService
from ftapp.shipping.serving import ServeService
from ftapp.transfer.service import DatabaseTransfer
from storage import Database


@dataclass
class Services:
    settings: Settings
    db: Database  # all of it, also in a demo visitor's services: each service scopes itself to its visitor
    datasets: DatasetService
    models: ModelService
    adapters: AdapterService
    prompts: PromptService
    configs: ConfigService
    database: DatabaseTransfer
    demo: DemoInstaller
    hf_token: HfToken
    api_keys: ApiKeys  # an LLM judge endpoint's keys, by name
    supervisor: Supervisor
    runs: RunService
    comparisons: ComparisonService
    evaluations: EvaluationService
    exports: ExportService
    serving: ServeService
    training_presets: TrainingPresetService
    # The public demo's visitor these services act for (``ftapp.visitors``); None: the local app, which sees everything.
    visitor: Visitor | None = None

    def machine(self) -> Machine:
        return detect_machine()

    def is_empty(self) -> bool:
        return not self.models.list() and not self.datasets.list()  # as the visitor, if any, sees them

    def close(self) -> None:
        self.supervisor.stop_background()
        self.db.close()


def open_services(settings: Settings) -> Services:
    settings.create_dirs()
    db = Database.open(settings.db_path)
    datasets = DatasetService(settings, db)
    models = ModelService(settings, db)
    adapters = AdapterService(settings, db)
    prompts = PromptService(db, datasets)
    configs = ConfigService(db)
    configs.ensure_presets()
    supervisor = Supervisor(settings, db, adapters, models)
    supervisor.backfill_outcomes()  # rows of runs ingested before revision 0006: their events are read once
    return Services(
        settings=settings,
        db=db,
        datasets=datasets,
        models=models,
        adapters=adapters,
        prompts=prompts,
        configs=configs,
        database=DatabaseTransfer(db, settings),
        demo=DemoInstaller(settings, models, datasets, prompts),
        hf_token=HfToken(settings.secrets_dir),
        api_keys=ApiKeys(settings.secrets_dir),
        supervisor=supervisor,
        runs=RunService(settings, db, datasets, supervisor),
        comparisons=ComparisonService(settings, db, datasets, supervisor),
        evaluations=EvaluationService(settings, db, supervisor),
        exports=ExportService(settings, db, supervisor),
        serving=ServeService(settings, db, supervisor),
        training_presets=TrainingPresetService(settings, db, configs),
    )
