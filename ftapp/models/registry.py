"""MD-003: models registered in the local MLflow model registry (the seed's CML registry).

mlflow is imported only inside the call: it costs seconds and the UI must start fast.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from ftapp import rules
from ftapp.errors import Problem, ValidationError

_MAX_DEPTH = 3


def _find_config_dir(root: Path) -> Path | None:
    # MLflow's transformers flavour keeps the weights a level or two below the version's root.
    if (root / "config.json").is_file():
        return root
    for depth in range(1, _MAX_DEPTH + 1):
        for candidate in sorted(root.glob("/".join(["*"] * depth) + "/config.json")):
            return candidate.parent
    return None


def resolve_registered_model(tracking_uri: str, name: str, version: str | None) -> tuple[str, Path]:
    """(version, local directory holding config.json) of a registered model version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    database = tracking_uri.removeprefix("sqlite:///") if tracking_uri.startswith("sqlite:///") else None
    if database is not None and not Path(database).is_file():
        # Nothing was ever registered; a client would create the store here, its Default experiment under ./mlruns.
        raise ValidationError(
            Problem(rules.MODEL_REGISTRY_NAME, f"the MLflow registry at {tracking_uri} is empty: '{name}' is not in it", "registry_name")
        )
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        if not version:
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise ValidationError(Problem(rules.MODEL_REGISTRY_NAME, f"registered model '{name}' has no versions", "registry_name"))
            version = str(max(int(v.version) for v in versions))
        uri = client.get_model_version_download_uri(name, version)
    except MlflowException as error:
        raise ValidationError(
            Problem(
                rules.MODEL_REGISTRY_NAME,
                f"'{name}' version {version or 'latest'} is not in the MLflow registry at {tracking_uri}",
                "registry_name",
            )
        ) from error
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ValidationError(
            Problem(
                rules.MODEL_REGISTRY_NAME,
                f"'{name}' v{version} lives at {uri}; only local registry artifacts can be loaded",
                "registry_name",
            )
        )
    root = Path(parsed.path)
    found = _find_config_dir(root) if root.is_dir() else None
    if found is None:
        raise ValidationError(Problem(rules.MODEL_REGISTRY_NAME, f"'{name}' v{version} at {root} has no config.json", "registry_name"))
    return version, found
