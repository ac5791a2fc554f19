"""The one check for paths that rows hold (and imports bring): where they resolve, symlinks followed.

Three uses, one function underneath (``inside``):
- deleting: only below the app's own folder for that thing (``require_inside(..., within=...)``);
- importing: only inside the home or an allowed root (``require_inside``), anything else is refused (DB-003);
- reading a path a row holds (``readable``): the same, except that a local unshared app also reads folders its
  owner named (a model registered by path, a run's FT-003 output_dir): there the owner may point anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ftapp import rules
from ftapp.errors import Problem, ValidationError
from ftapp.rules import Rule
from ftapp.settings import Settings
from storage import RunRecord

PATH_RULE = rules.DB_IMPORT_PATHS


def home_roots(settings: Settings) -> tuple[Path, ...]:
    return (settings.home, *(settings.allowed_roots or ()))


def _resolved(path: str | Path) -> Path | None:
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, an embedded NUL byte
        return None


def inside(path: str | Path, roots: Iterable[str | Path], strictly: bool = False) -> Path | None:
    """``path`` resolved when it lies in one of ``roots`` (below it, when ``strictly``), else None."""
    resolved = _resolved(path) if str(path) else None
    if resolved is None:
        return None
    for root in roots:
        base = _resolved(root)
        if base is not None and resolved.is_relative_to(base) and not (strictly and resolved == base):
            return resolved
    return None


def require_inside(
    settings: Settings, path: str | Path, what: str, field: str = "path", *, within: Path | None = None, rule: Rule = PATH_RULE
) -> Path:
    """``path`` resolved inside the home or an allowed root (strictly below ``within``, when given), else DB-003."""
    roots = (within,) if within is not None else home_roots(settings)
    resolved = inside(path, roots, strictly=within is not None)
    if resolved is None:
        where = (
            f"below {within}"
            if within is not None
            else "inside the home " + str(settings.home) + (" or an allowed root" if settings.allowed_roots else "")
        )
        raise ValidationError(Problem(rule, f"{what}: {str(path)[:300]!r} does not resolve {where}", field))
    return resolved


def readable(settings: Settings, path: str | Path, what: str, field: str = "path", rule: Rule = PATH_RULE) -> Path:
    """A path a row holds, to read: inside the home or an allowed root; a local unshared app also reads what its
    owner registered elsewhere (an import cannot bring such a path: it is held to ``require_inside``)."""
    if settings.allowed_roots is None and not settings.demo:
        resolved = _resolved(path) if str(path) else None
        if resolved is None:
            raise ValidationError(Problem(rule, f"{what}: {str(path)[:300]!r} is not a usable path", field))
        return resolved
    return require_inside(settings, path, what, field, rule=rule)


def run_folder(settings: Settings, run: RunRecord) -> Path:
    """The folder of a run, to read its files: every folder ftapp makes for a run is ``<parent>/<run id>``
    (``<home>/runs/<id>``, or under an FT-003 output_dir), and it must be ``readable``."""
    what = f"run {run.id}: run_dir"
    if not run.run_dir or Path(run.run_dir).name != run.id:
        raise ValidationError(Problem(PATH_RULE, f"{what} {str(run.run_dir)[:300]!r} is not a folder named by the run's id", "run_dir"))
    return readable(settings, run.run_dir, what, "run_dir")


def run_log(settings: Settings, run: RunRecord) -> Path | None:
    """The run's log file, inside its folder; None for a run that never had one."""
    if not run.log_path:
        return None
    folder = run_folder(settings, run)
    return require_inside(settings, run.log_path, f"run {run.id}: log_path", "log_path", within=folder)
