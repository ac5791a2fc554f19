"""Conversations rendered through a model's chat template, split into trained and masked parts.

The Prompts tab shows ``messages``/``sharegpt`` rows the way the trainer feeds them: through the
model's chat template, with the assistant turns (what the loss is taken on) told apart from the
rest (system and user turns, role headers: masked). Here: which template and special tokens a
model has, and which rows to show; the rendering runs in a process of its own
(``ftapp.chat_rendering``, which says why and how).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftapp.chat_rendering import RENDER_MEMORY_BYTES, Message
from ftapp.errors import FtappError

if TYPE_CHECKING:
    from ftapp.datasets.service import DatasetService
    from ftapp.services import Services
    from storage import DatasetRecord, ModelRecord

CHAT_FORMATS = ("messages", "sharegpt")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
TEMPLATE_FILE = "chat_template.jinja"
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")

RENDER_TIMEOUT_S = 20.0  # wall time of the process that renders a preview's conversations


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool


@dataclass(frozen=True)
class ChatTemplate:
    """A model's chat template and the special-token strings it may refer to."""

    template: str
    bos_token: str = ""
    eos_token: str = ""


def _read_json(path: Path) -> dict:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json stores special tokens as strings or as serialized AddedTokens.
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def load_chat_template(model_dir: Path) -> str | None:
    """The chat template of a local model directory, or None when it has none.

    ``chat_template.jinja`` (what transformers 5 writes) wins over ``tokenizer_config.json``'s
    ``chat_template``; a list of named templates there yields the one named ``default``.
    """
    model_dir = Path(model_dir)
    jinja_file = model_dir / TEMPLATE_FILE
    if jinja_file.is_file():
        text = jinja_file.read_text(encoding="utf-8")
        if text.strip():
            return text
    value = _read_json(model_dir / "tokenizer_config.json").get("chat_template")
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    return value if isinstance(value, str) and value.strip() else None


def load_special_tokens(model_dir: Path) -> tuple[str, str]:
    """(bos_token, eos_token) strings of a local model directory; "" where it names none."""
    found: dict[str, str] = {}
    for name in CONFIG_FILES:  # tokenizer_config.json first: it is what the tokenizer loads
        config = _read_json(Path(model_dir) / name)
        for key in ("bos_token", "eos_token"):
            text = _token_text(config.get(key))
            if key not in found and text is not None:
                found[key] = text
    return found.get("bos_token", ""), found.get("eos_token", "")


def load_model_template(model_dir: Path) -> ChatTemplate | None:
    template = load_chat_template(model_dir)
    if template is None:
        return None
    return ChatTemplate(template, *load_special_tokens(model_dir))


def render_conversations(
    template: str, conversations: list[list[Message]], bos_token: str = "", eos_token: str = ""
) -> list[list[Segment]]:
    """Each conversation rendered through ``template``, as segments whose texts join to the full render.

    Assistant messages are trained (less the header a generation prompt renders), everything else (template
    preamble, system and user turns) is masked. The template runs in a process of its own (``ftapp.chat_rendering``)
    with bounded memory and time: it is a stranger's program. Raises FtappError when it cannot render a conversation
    or does not finish within those bounds.
    """
    request = json.dumps({"template": template, "conversations": conversations, "bos_token": bos_token, "eos_token": eos_token})
    try:
        child = subprocess.run(
            [sys.executable, "-s", "-m", "ftapp.chat_rendering"],
            input=request,
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_S,
            cwd=Path(__file__).resolve().parents[2],  # the folder that holds the ftapp package
        )
    except subprocess.TimeoutExpired as error:
        raise FtappError(f"the chat template did not finish within {RENDER_TIMEOUT_S:g} s; it is not previewed") from error
    try:
        answer = json.loads(child.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) and child.returncode < 0:  # killed at its memory or CPU limit
        raise FtappError(
            f"the chat template stopped the process that rendered it (signal {-child.returncode}: more than "
            f"{RENDER_MEMORY_BYTES // 2**30} GiB of memory or its CPU time); it is not previewed"
        )
    if not isinstance(answer, dict):
        raise FtappError(f"the chat template could not be rendered: {child.stderr.strip()[-500:] or f'exit status {child.returncode}'}")
    if "error" in answer:
        raise FtappError(str(answer["error"]))
    return [[Segment(text, trained) for text, trained in segments] for segments in answer["segments"]]


def render_conversation(template: str, messages: list[Message], bos_token: str = "", eos_token: str = "") -> list[Segment]:
    return render_conversations(template, [messages], bos_token, eos_token)[0]


def _content(value: Any) -> str:
    if isinstance(value, list):  # OpenAI content parts: keep the text ones
        return "".join(part.get("text") or "" for part in value if isinstance(part, dict))
    return "" if value is None else str(value)


def messages_turns(row: dict) -> list[Message]:
    """A ``messages`` row's turns as plain role/content pairs (extra keys dropped, as the trainer does)."""
    return [{"role": str(turn.get("role")), "content": _content(turn.get("content"))} for turn in row.get("messages") or []]


def sharegpt_turns(row: dict) -> list[Message]:
    """A ``sharegpt`` row's ``conversations`` as messages: human→user, gpt→assistant, other speakers
    kept as their role; a ``system`` column becomes a leading system turn when none is there."""
    turns = []
    for turn in row.get("conversations") or []:
        speaker = str(turn.get("from"))
        turns.append({"role": SHAREGPT_ROLES.get(speaker.lower(), speaker), "content": _content(turn.get("value"))})
    system = row.get("system")
    if system and not any(turn["role"] == "system" for turn in turns):
        turns.insert(0, {"role": "system", "content": str(system)})
    return turns


def row_messages(row: dict, dataset_format: str) -> list[Message]:
    if dataset_format == "messages":
        return messages_turns(row)
    if dataset_format == "sharegpt":
        return sharegpt_turns(row)
    raise FtappError(f"only messages or sharegpt data renders through a chat template (this is {dataset_format})")


def model_template(model: ModelRecord) -> ChatTemplate:
    """The chat template of a registered model; FtappError when it has no local one."""
    if not model.location:
        raise FtappError(
            f"model '{model.name}' has no local directory to read a chat template from "
            f"(it is the Hub model {model.huggingface_name}); register a local copy to preview conversations"
        )
    directory = Path(model.location)
    if not directory.is_dir():
        raise FtappError(f"model '{model.name}': its directory {directory} is gone")
    template = load_model_template(directory)
    if template is None:
        raise FtappError(
            f"model '{model.name}' has no chat template ({TEMPLATE_FILE} or tokenizer_config.json's chat_template "
            f"in {directory}); conversations need one to train as chats"
        )
    return template


def chat_preview(datasets: DatasetService, model: ModelRecord, dataset: DatasetRecord, limit: int = 3) -> list[list[Segment]]:
    """The dataset's first ``limit`` rows rendered through the model's chat template, as segments."""
    if dataset.format not in CHAT_FORMATS:
        raise FtappError(
            f"dataset '{dataset.name}' is {dataset.format} data; only messages or sharegpt data renders through a chat template"
        )
    template = model_template(model)
    rows = datasets.read_rows(dataset, 0, limit)
    conversations = [row_messages(row, dataset.format) for row in rows]
    return render_conversations(template.template, conversations, template.bos_token, template.eos_token)


def chat_preview_by_id(services: Services, model_id: str, dataset_id: str, limit: int = 3) -> list[list[Segment]]:
    """``chat_preview`` for registered ids (what the UI holds)."""
    return chat_preview(services.datasets, services.models.get(model_id), services.datasets.get(dataset_id), limit)
