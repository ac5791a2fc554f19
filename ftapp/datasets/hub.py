"""Resolving and previewing datasets on the Hugging Face Hub (rule DS-002).

``datasets`` and ``huggingface_hub`` are imported inside the functions: the UI process imports
this module and must start fast.

Offline handling is deliberate. ``datasets`` retries an unreachable Hub for about 25 seconds, and
both libraries read ``HF_HUB_OFFLINE`` once at import. So each call first reads the offline
variables itself, then makes one cheap metadata request with a short timeout; only when that
answers does ``datasets`` get to talk to the Hub.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

from ftapp import rules
from ftapp.datasets.files import infer_features
from ftapp.errors import NetworkRequiredError, Problem, ValidationError
from ftapp.hub_ids import hub_id_problem

SAMPLE_ROWS = 20
# One metadata request; long enough for a slow link, short enough that a dead one fails quickly.
PROBE_TIMEOUT_S = 10.0
# The variables huggingface_hub and datasets honour, in the spelling they accept as "on".
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
# Problem.field names: the fields of the dataset import request (ftapp.datasets.service.AddDatasetRequest).
NAME_FIELD, CONFIG_FIELD, SPLIT_FIELD = "huggingface_name", "hf_config", "hf_split"
_IMPORT_INSTEAD = "Import the data as a local file instead (CSV, JSON, JSONL or Parquet), or retry with network access."


@dataclass(frozen=True)
class HubDatasetInfo:
    name: str
    config: str | None
    split: str
    columns: list[str]
    features: dict[str, str]  # column -> string|int|float|bool|list|object|null|mixed
    num_rows: int | None  # None when the Hub does not publish the split size
    description: str
    sample_rows: list[dict]  # the first SAMPLE_ROWS rows


class HubUnreachableError(ValidationError, NetworkRequiredError):
    """DS-002 because the Hub cannot be reached. It is both a broken rule and a need for the network,
    so callers that catch either ``ValidationError`` or ``NetworkRequiredError`` handle it."""


def inspect_hub_dataset(name: str, config: str | None = None, split: str = "train", token: str | None = None) -> HubDatasetInfo:
    """Check that ``name`` / ``config`` / ``split`` resolve on the Hub and describe the split.

    Streams only the sample rows; nothing is downloaded in full. Raises ``ValidationError``
    (DS-002), or its subclass ``HubUnreachableError`` when the Hub cannot be reached.
    """
    config = config or None
    _check_request(name, split)
    _refuse_when_offline(name)
    hub_info = _probe(name, token)
    import datasets  # deferred: see the module docstring

    try:
        builder = datasets.load_dataset_builder(name, config, token=token)
    except datasets.exceptions.DatasetNotFoundError as exc:  # its message tells missing from gated
        raise ValidationError(Problem(rules.DATASET_HUB_NAME, str(exc), NAME_FIELD)) from exc
    except Exception as exc:  # any failure to resolve the id or config is DS-002; see _as_problem
        raise _as_problem(exc, name, CONFIG_FIELD) from exc
    splits = list(builder.info.splits or {}) or list(getattr(builder.config, "data_files", None) or {})
    if splits and split not in splits:
        raise ValidationError(
            Problem(rules.DATASET_HUB_NAME, f"dataset '{name}' has no split '{split}'; available: {', '.join(splits)}", SPLIT_FIELD)
        )
    stream = _open_stream(name, config, split, token)
    sample = _take(stream, 0, SAMPLE_ROWS, name)
    features = builder.info.features or stream.features
    columns = list(features) if features else _union_of_keys(sample)
    split_info = (builder.info.splits or {}).get(split)
    return HubDatasetInfo(
        name=name,
        config=config,
        split=split,
        columns=columns,
        features={column: _feature_kind(features[column]) for column in columns} if features else infer_features(sample),
        num_rows=split_info.num_examples if split_info and split_info.num_examples else None,
        description=builder.info.description or getattr(hub_info, "description", None) or "",
        sample_rows=sample,
    )


def read_hub_rows(name: str, config: str | None, split: str, offset: int = 0, limit: int = 20, token: str | None = None) -> list[dict]:
    """Rows ``offset`` .. ``offset + limit - 1`` of a Hub split, streamed so a preview never
    downloads the whole dataset. Raises like ``inspect_hub_dataset``."""
    if offset < 0 or limit < 0:
        raise ValueError(f"offset and limit must be >= 0, got offset={offset}, limit={limit}")
    config = config or None
    _check_request(name, split)
    _refuse_when_offline(name)
    _probe(name, token)
    return _take(_open_stream(name, config, split, token), offset, limit, name)


def _check_request(name: str, split: str) -> None:
    problems = []
    if not name or not name.strip():
        problems.append(Problem(rules.DATASET_HUB_NAME, "a Hugging Face dataset id is required, e.g. 'tatsu-lab/alpaca'", NAME_FIELD))
    elif invalid := hub_id_problem(rules.DATASET_HUB_NAME, name, NAME_FIELD, "dataset"):
        problems.append(invalid)
    if not split or not split.strip():
        problems.append(Problem(rules.DATASET_HUB_NAME, "a split name is required, e.g. 'train'", SPLIT_FIELD))
    if problems:
        raise ValidationError(problems)


def _refuse_when_offline(name: str) -> None:
    for variable in _OFFLINE_VARIABLES:
        if os.environ.get(variable, "").upper() in _TRUE_VALUES:
            raise HubUnreachableError(
                Problem(
                    rules.DATASET_HUB_NAME,
                    f"the Hugging Face Hub cannot be reached: this process is offline ({variable}="
                    f"{os.environ[variable]}), so dataset '{name}' cannot be resolved. {_IMPORT_INSTEAD}",
                    NAME_FIELD,
                )
            )


def _probe(name: str, token: str | None):  # -> huggingface_hub.hf_api.DatasetInfo
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(name, token=token, timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # classified by _as_problem
        raise _as_problem(exc, name, NAME_FIELD) from exc


def _open_stream(name: str, config: str | None, split: str, token: str | None):  # -> datasets.IterableDataset
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split, streaming=True, token=token)
    except datasets.exceptions.DatasetNotFoundError as exc:
        raise ValidationError(Problem(rules.DATASET_HUB_NAME, str(exc), NAME_FIELD)) from exc
    except Exception as exc:
        raise _as_problem(exc, name, SPLIT_FIELD) from exc


def _take(stream, offset: int, limit: int, name: str) -> list[dict]:
    rows = stream.skip(offset) if offset else stream
    try:
        return list(itertools.islice(rows, limit))
    except Exception as exc:  # remote files that do not parse, or a dropped connection
        raise _as_problem(exc, name, NAME_FIELD) from exc


def _as_problem(exc: Exception, name: str, field: str) -> ValidationError:
    """The DS-002 error a failure of huggingface_hub or datasets stands for.

    Both libraries raise from many layers (HTTP, file systems, builders), so this classifies by the
    few types that change what the user should do and keeps the library's own words otherwise.
    """
    from huggingface_hub import errors

    if isinstance(exc, errors.OfflineModeIsEnabled):
        return HubUnreachableError(
            Problem(
                rules.DATASET_HUB_NAME, f"the Hugging Face Hub cannot be reached: offline mode is enabled. {_IMPORT_INSTEAD}", NAME_FIELD
            )
        )
    if isinstance(exc, errors.GatedRepoError):
        message = f"dataset '{name}' is gated: accept its terms on huggingface.co and provide an access token"
        return ValidationError(Problem(rules.DATASET_HUB_NAME, message, NAME_FIELD))
    if isinstance(exc, errors.RepositoryNotFoundError):
        message = f"dataset '{name}' was not found on the Hugging Face Hub (a private dataset also needs an access token)"
        return ValidationError(Problem(rules.DATASET_HUB_NAME, message, NAME_FIELD))
    if isinstance(exc, errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "an error"
        return ValidationError(Problem(rules.DATASET_HUB_NAME, f"the Hub answered {status} for dataset '{name}' ({exc})", NAME_FIELD))
    # errors.HTTPError is the HTTP client's base class: what is left of it is a transport failure.
    if isinstance(exc, (errors.HTTPError, ConnectionError, TimeoutError)):
        return HubUnreachableError(
            Problem(rules.DATASET_HUB_NAME, f"the Hugging Face Hub cannot be reached ({exc}). {_IMPORT_INSTEAD}", NAME_FIELD)
        )
    return ValidationError(Problem(rules.DATASET_HUB_NAME, f"dataset '{name}' cannot be loaded ({type(exc).__name__}: {exc})", field))


def _feature_kind(feature: object) -> str:
    """Our feature vocabulary (see ``DatasetTable.features``) for a ``datasets`` feature."""
    import datasets

    if isinstance(feature, datasets.Value):
        dtype = feature.dtype
        if dtype in ("string", "large_string"):
            return "string"
        if dtype == "bool":
            return "bool"
        if dtype.startswith(("int", "uint")):
            return "int"
        if dtype.startswith(("float", "double", "half")):
            return "float"
        if dtype == "null":
            return "null"
        return "object"  # timestamps, dates, binary: no JSON counterpart
    if isinstance(feature, datasets.ClassLabel):
        return "int"
    if isinstance(feature, (list, datasets.List, datasets.LargeList)):
        return "list"
    return "object"  # dicts of features, images, audio, translations, arrays


def _union_of_keys(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))
