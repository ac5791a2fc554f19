"""Hugging Face Hub look-ups for models and adapters (MD-002, AD-006).

Online: ``HfApi.model_info`` gives gating and licence, then config.json is fetched. Offline
(HF_HUB_OFFLINE=1 or settings.offline): the local Hub cache is the only source, and a repo
that is not cached fails at once with a message that says the network is needed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from ftapp.errors import Problem, ValidationError
from ftapp.rules import Rule


@dataclass(frozen=True)
class HubRepoInfo:
    repo_id: str
    files: dict[str, dict[str, Any]]  # requested JSON files that exist -> their content
    gated: bool | None
    license: str | None
    from_cache: bool


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _from_cache(repo_id: str, filenames: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    from huggingface_hub import try_to_load_from_cache

    found = {}
    for filename in filenames:
        path = try_to_load_from_cache(repo_id, filename)
        if isinstance(path, str):
            with open(path, encoding="utf-8") as handle:
                found[filename] = json.load(handle)
    return found


def inspect_hub_repo(repo_id: str, filenames: tuple[str, ...], rule: Rule, token: str | None = None, offline: bool = False) -> HubRepoInfo:
    """Resolve a model-type repo and read the JSON files named; ``rule`` labels failures."""
    repo_id = repo_id.strip()
    if offline or hub_offline():
        cached = _from_cache(repo_id, filenames)
        if filenames[0] in cached:
            return HubRepoInfo(repo_id, cached, None, None, True)
        raise ValidationError(
            Problem(
                rule,
                f"'{repo_id}' is not in the local Hugging Face cache and the Hub cannot be reached "
                "(offline: HF_HUB_OFFLINE is set). Connect to the network, or register a local directory instead.",
                "huggingface_name",
            )
        )
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        info = HfApi(token=token).model_info(repo_id)
        files: dict[str, dict[str, Any]] = {}
        present = {s.rfilename for s in (info.siblings or [])}
        for filename in filenames:
            if filename in present:
                with open(hf_hub_download(repo_id, filename, token=token), encoding="utf-8") as handle:
                    files[filename] = json.load(handle)
    except GatedRepoError as error:
        raise ValidationError(
            Problem(
                rule, f"'{repo_id}' is gated: accept its licence on the Hub and set an HF token in Settings ({error})", "huggingface_name"
            )
        ) from error
    except RepositoryNotFoundError as error:
        raise ValidationError(
            Problem(rule, f"'{repo_id}' does not exist on the Hugging Face Hub (or is private and no token is set)", "huggingface_name")
        ) from error
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise ValidationError(
            Problem(rule, f"could not resolve '{repo_id}' on the Hugging Face Hub: {error}", "huggingface_name")
        ) from error
    card = getattr(info, "card_data", None) or {}
    license_name = card.get("license") if hasattr(card, "get") else None
    gated = bool(info.gated) if info.gated is not None else None
    return HubRepoInfo(repo_id, files, gated, license_name, False)
