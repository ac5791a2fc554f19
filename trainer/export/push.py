"""Push an adapter or model directory to the Hugging Face Hub: create the repo, then one commit.

The token comes from the environment (``HF_TOKEN``, put there by the supervisor from the app's
settings); it is never in the spec. The repo is private unless the spec says otherwise; an existing
repo of the user's gets a new commit. The commit holds the shipped files and the rendered model card
as README.md, so one push is one revision on the Hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import CommitOperationAdd, HfApi, constants

from trainer.export.files import CARD_FILE, card_text, refuse_secrets, shipped_files
from trainer.protocol import DONE, STARTED, ExportSpec

if TYPE_CHECKING:  # trainer.run_events imports transformers: seconds a push does not need
    from trainer.run_events import EventSink


def run_push(spec: ExportSpec, events: EventSink) -> bool:
    if constants.HF_HUB_OFFLINE:
        raise ConnectionError("HF_HUB_OFFLINE is set: the Hub cannot be reached, nothing was pushed")
    if not spec.repo_id:
        raise ValueError("spec.repo_id is required to push")
    source = Path(spec.source)
    files, card = shipped_files(source), card_text(spec)
    refuse_secrets(source, files, card)
    events.emit(STARTED, run_id=spec.run_id, action="push", repo_id=spec.repo_id, private=spec.private, files=len(files))
    api = HfApi()  # reads HF_TOKEN from the environment
    repo = api.create_repo(spec.repo_id, repo_type="model", private=spec.private, exist_ok=True)
    operations = [CommitOperationAdd(relative.as_posix(), str(source / relative)) for relative in files]
    if card is not None:
        operations.append(CommitOperationAdd(CARD_FILE, card.encode("utf-8")))
    commit = api.create_commit(repo.repo_id, operations, commit_message=f"Upload {spec.name} from ftapp", repo_type="model")
    events.emit(
        DONE,
        action="push",
        repo_id=repo.repo_id,
        repo_url=str(repo),
        commit_url=commit.commit_url,
        private=spec.private,
        files=len(operations),
    )
    return True
