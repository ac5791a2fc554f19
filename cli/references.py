"""Every argument that names a record takes its id, its unique name or an id prefix (``ftapp.references``).

The arguments are listed here once, by the attribute argparse gives them, and turned into ids right after
parsing, so each command receives full ids and no command can forget to accept names and prefixes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from ftapp.references import Referable, resolve_reference
from ftapp.services import Services

# The positional ``id`` of each group names one of its own records.
GROUP_KINDS = {
    "datasets": "dataset",
    "models": "model",
    "adapters": "adapter",
    "prompts": "prompt",
    "configs": "config",
    "runs": "run",
    "export": "run",
}
# Options that name a record, in every group that has them.
OPTION_KINDS = {
    "model": "model",
    "dataset": "dataset",
    "prompt": "prompt",
    "adapter": "adapter",
    "run": "run",
    "init_adapter": "adapter",
    "training_config": "config",
    "lora_config": "config",
    "bnb_config": "config",
    "generation_config": "config",
    "axolotl_config": "config",
}


def _listings(services: Services) -> dict[str, Callable[[], Sequence[Referable]]]:
    return {
        "dataset": services.datasets.list,
        "model": services.models.list,
        "adapter": services.adapters.list,
        "prompt": services.prompts.list,
        "config": services.configs.list,
        "run": services.runs.list,
    }


def resolve_arguments(services: Services, args: argparse.Namespace) -> None:
    """Replace every reference in ``args`` by the id it names (RF-001 when it names several records)."""
    listings = _listings(services)
    cache: dict[str, Sequence[Referable]] = {}

    def resolve(kind: str, reference: str, field: str) -> str:
        if kind not in cache:
            cache[kind] = listings[kind]()
        return resolve_reference(kind, reference, cache[kind], field)

    targets = [("id", GROUP_KINDS[args.group])] if args.group in GROUP_KINDS else []
    targets += list(OPTION_KINDS.items())
    for attribute, kind in targets:
        value = getattr(args, attribute, None)
        if isinstance(value, str) and value:
            setattr(args, attribute, resolve(kind, value, attribute))
        elif isinstance(value, list):  # repeatable options (compare --adapter)
            setattr(args, attribute, [resolve(kind, item, attribute) for item in value])
    if getattr(args, "combo", None):  # evaluate --combo MODEL[:ADAPTER]
        args.combo = [_resolve_combo(resolve, text) for text in args.combo]


def _resolve_combo(resolve: Callable[[str, str, str], str], text: str) -> str:
    model, sep, adapter = text.partition(":")
    if not model.strip():
        return text  # parse_combination reports the malformed value
    resolved = resolve("model", model, "combo")
    return f"{resolved}:{resolve('adapter', adapter, 'combo')}" if sep and adapter.strip() else resolved
