"""The public demo's visitors: the host's services, built again with a visitor passed in.

A visitor's services are the same classes as the host's with a ``Visitor`` (owner, caps, address
book; ``ftapp.demo.visitor``) given to each: they see the shared demo model, dataset and prompt
(rows without an owner) plus what the visitor made, stamp what it makes with its owner, and add the
demo's DM- problems to their usual validation. The supervisor and the demo installer stay the
host's. The services hold no state of their own, so the UI builds them afresh for every request.
The local app never builds these: its services have no visitor and see everything.
"""

from __future__ import annotations

from dataclasses import replace

from ftapp.compare.service import ComparisonService
from ftapp.datasets.service import DatasetService
from ftapp.demo.address_book import AddressBook
from ftapp.demo.live_runs import busy_owners
from ftapp.demo.policy import DemoCaps, owner_of
from ftapp.demo.visitor import Visitor
from ftapp.evaluation.service import EvaluationService
from ftapp.models.adapters import AdapterService
from ftapp.models.service import ModelService
from ftapp.prompts.configs import ConfigService
from ftapp.prompts.service import PromptService
from ftapp.runs.service import RunService
from ftapp.runs.training_presets import TrainingPresetService
from ftapp.secrets import ApiKeys, HfToken
from ftapp.services import Services
from ftapp.shipping.exports import ExportService
from ftapp.shipping.serving import ServeService
from ftapp.transfer.service import DatabaseTransfer

# Outside any event (while the page is built) nobody is asking: that view sees only shared things.
NOBODY = "nobody"


def visitor_services(services: Services, visitor: Visitor) -> Services:
    """``services`` (the host's, or any visitor's: ``db`` is the whole database in both) as ``visitor`` sees them."""
    settings, db, supervisor = services.settings, services.db, services.supervisor
    datasets = DatasetService(settings, db, visitor)
    configs = ConfigService(db, visitor)
    return Services(
        settings=settings,
        db=db,
        datasets=datasets,
        models=ModelService(settings, db, visitor),
        adapters=AdapterService(settings, db, visitor),
        prompts=PromptService(db, datasets, visitor),
        configs=configs,
        database=DatabaseTransfer(db, settings, visitor),
        demo=services.demo,
        hf_token=HfToken(settings.secrets_dir, visitor),
        api_keys=ApiKeys(settings.secrets_dir, visitor),
        supervisor=supervisor,
        runs=RunService(settings, db, datasets, supervisor, visitor),
        comparisons=ComparisonService(settings, db, datasets, supervisor, visitor=visitor),
        evaluations=EvaluationService(settings, db, supervisor, visitor),
        exports=ExportService(settings, db, supervisor, visitor),
        serving=ServeService(settings, db, supervisor, visitor),
        training_presets=TrainingPresetService(settings, db, configs, visitor),
        visitor=visitor,
    )


def demo_services(services: Services, caps: DemoCaps | None = None) -> Services:
    """The public demo's page: nobody's view of the host's ``services``, holding the caps and the app's one
    address book, from which ``services_for_key`` builds each request's visitor's own."""
    book = AddressBook(busy=lambda: busy_owners(services.db))  # visitors with live runs stay in the book
    return visitor_services(services, Visitor(owner_of(NOBODY), caps or DemoCaps.from_env(), book))


def services_for_key(page: Services, visitor_key: str, address: str | None = None) -> Services:
    """The services of the browser that holds ``visitor_key``, asking from ``address`` (noted for the caps per
    address, DM-009); ``page`` is ``demo_services``'s (or any visitor's: the caps and the book are the same)."""
    if page.visitor is None:
        raise ValueError("services_for_key takes the demo's services (demo_services), not the host's")
    owner = owner_of(visitor_key)
    if address:
        page.visitor.book.note(owner, address)
    return visitor_services(page, replace(page.visitor, owner=owner))
