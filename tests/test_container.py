"""The deploy files, checked without a Docker engine or a Space: the Dockerfile parses into instructions
that fit the repository and launch.py, and the Spaces files agree with pyproject.toml."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, backslash continuations joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in joined.splitlines() if line.strip()]


def command(arguments: str) -> list[str]:
    """An exec-form (JSON) or shell-form command as a list."""
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def load_launch():
    spec = importlib.util.spec_from_file_location("launch_in_container", ROOT / "launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def values(dockerfile, name: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile if instruction == name]


def test_the_image_is_cuda_and_runs_as_a_user_with_its_home_on_a_volume(dockerfile):
    (base,) = values(dockerfile, "FROM")
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    order = [instruction for instruction, _ in dockerfile]
    user = values(dockerfile, "USER")[-1]
    assert user not in ("root", "0") and order.index("USER") < order.index("ENTRYPOINT")
    env = " ".join(values(dockerfile, "ENV"))
    home = re.search(r"FTAPP_HOME=(\S+)", env).group(1)
    assert home.startswith(f"/home/{user}/")
    assert home in [v for volume in values(dockerfile, "VOLUME") for v in command(volume)]


def test_torch_is_installed_first_and_pinned_like_the_readme(dockerfile):
    runs = values(dockerfile, "RUN")
    torch_at = next(i for i, run in enumerate(runs) if "torch==" in run)
    project_at = next(i for i, run in enumerate(runs) if "pip install ." in run)
    pin = re.search(r"torch==[\d.]+", runs[torch_at]).group(0)
    assert torch_at < project_at and f"pip install {pin}" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_what_the_image_copies_exists_and_dockerignore_keeps_the_rest_out(dockerfile):
    for arguments in values(dockerfile, "COPY"):
        *sources, _target = command(arguments)
        for source in sources:
            assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_the_entrypoint_is_launch_py_with_arguments_it_accepts_and_a_matching_healthcheck(dockerfile, monkeypatch):
    (entrypoint,) = values(dockerfile, "ENTRYPOINT")
    program, script, *arguments = command(entrypoint)
    assert program == "python" and (ROOT / script).is_file()
    monkeypatch.delenv("FTAPP_AUTH", raising=False)
    launch = load_launch()
    parser = launch.build_parser()
    args = parser.parse_args(arguments)
    port = re.search(r"\d+", values(dockerfile, "EXPOSE")[0]).group(0)
    assert str(args.port) == port and launch.is_exposed(args)
    with pytest.raises(SystemExit):  # exposed without a login: it refuses to start ...
        launch.parse_auth(parser, args)
    monkeypatch.setenv("FTAPP_AUTH", "me:a-long-password")  # ... unless `docker run -e FTAPP_AUTH=...` gives one
    with_login = launch.build_parser()  # the default is read when the parser is built
    assert launch.parse_auth(with_login, with_login.parse_args(arguments)) == ("me", "a-long-password")
    (health,) = values(dockerfile, "HEALTHCHECK")
    assert "CMD" in health and f"127.0.0.1:{port}/" in health


def test_the_spaces_files_agree_with_the_project():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    front = re.match(r"---\n(.*?)\n---\n", readme, re.S)
    assert front, "the README starts with the Spaces front matter"
    fields = dict(line.split(":", 1) for line in front.group(1).splitlines() if ":" in line)
    assert fields["sdk"].strip() == "gradio" and (ROOT / fields["app_file"].strip()).is_file()
    assert readme[front.end() :].lstrip().startswith("# ftapp")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    lines = [line for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    assert lines[0].startswith("torch==") and lines[1:] == [d for d in project if not d.startswith("torch")]
