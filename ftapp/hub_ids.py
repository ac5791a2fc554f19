"""What a Hugging Face Hub id may be: a valid repo id that names no path on this server.

``datasets.load_dataset`` (and transformers' ``from_pretrained``) read a local folder instead of the Hub when one
exists under the given name, relative to the working directory. So in an app shared with others a Hub id such as
``ftapp_home/uploads``, with a Hub repo of that name behind it, would preview this server's files as a Hub dataset's
rows. Such an id is refused before anything resolves it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ftapp.errors import Problem

if TYPE_CHECKING:  # rules.py imports modules that import this one
    from ftapp.rules import Rule


def hub_id_problem(rule: Rule, name: str, field: str, kind: str) -> Problem | None:
    """Why ``name`` (stripped) cannot be read as the Hub id of a ``kind`` ("dataset", "model"), or None."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as exc:
        return Problem(rule, f"'{name[:200]}' is not a valid Hugging Face {kind} id ({exc})", field)
    if os.path.lexists(name):
        return Problem(
            rule,
            f"'{name}' is also a path on this server (under {os.getcwd()}), which the libraries would read instead of "
            f"the Hub {kind}; register that folder as a local {kind} if it is the one you mean",
            field,
        )
    return None
