"""launch.py as a user runs it: in subprocesses, so sys.modules and exit codes are the real ones."""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "trl")
UI_MAY_IMPORT = {"gradio", "pandas", "plotly", "ftapp", "ui"}
STARTUP_LIMIT_S = 60


def child_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}


def test_ui_and_a_built_page_leave_the_training_stack_unimported(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import ui\n"
        f"heavy = {HEAVY!r}\n"
        "after_import = [m for m in heavy if m in sys.modules]\n"
        "from ftapp.services import open_services\n"
        "from ftapp.settings import Settings\n"
        "ui.build_app(open_services(Settings.from_env(sys.argv[1])))\n"
        "after_build = [m for m in heavy if m in sys.modules]\n"
        "print(json.dumps({'import': after_import, 'build': after_build, 'gradio': 'gradio' in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "home")],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {"import": [], "build": [], "gradio": True}


def test_ui_modules_import_only_gradio_pandas_plotly_and_ftapp() -> None:
    # ftapp itself reaches sqlalchemy through storage; what ui may not do is import it (or
    # storage, torch, subprocess...) directly.
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "ui").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root not in sys.stdlib_module_names or root == "subprocess":
                    found.setdefault(root, set()).add(path.name)

    assert found, "the scan found no imports at all; it is not reading ui/"
    assert set(found) <= UI_MAY_IMPORT, {k: v for k, v in found.items() if k not in UI_MAY_IMPORT}


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--share"], "--share publishes a public link"),
        (["--host", "0.0.0.0"], "--host 0.0.0.0 listens beyond this machine"),
    ],
)
def test_exposing_the_app_without_auth_is_refused(tmp_path: Path, args: list[str], reason: str) -> None:
    result = subprocess.run(
        [sys.executable, "launch.py", "--home", str(tmp_path / "home"), "--no-demo", *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "refusing to start" in result.stderr and reason in result.stderr and "--auth user:pass" in result.stderr
    assert not (tmp_path / "home").exists()  # refused before anything was created


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_app_serves_its_page(tmp_path: Path, record_property) -> None:
    port = free_port()
    home = tmp_path / "home"
    log_path = tmp_path / "launch.log"
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "launch.py", "--home", str(home), "--port", str(port), "--no-demo"],
            cwd=ROOT,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        status, page = None, ""
        while time.monotonic() - started < STARTUP_LIMIT_S and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    status, page = response.status, response.read().decode("utf-8", errors="replace")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        startup_s = time.monotonic() - started
        record_property("startup_s", round(startup_s, 2))
        print(f"launch.py served / after {startup_s:.1f} s")
        assert status == 200, log_path.read_text(encoding="utf-8")
        assert "ftapp" in page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
            config = json.loads(response.read())
        assert config["run_history"] is False  # no browser-side copy of calls' inputs (tokens, API keys)
        assert (home / "ftapp.db").is_file()
        assert not (home / "models" / "demo-tiny-llama.build.log").exists()  # --no-demo
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_shared_app_reads_only_uploads_and_allowed_roots(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("launch_under_test", ROOT / "launch.py")
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)
    parser = launch.build_parser()
    local = parser.parse_args([])
    shared = parser.parse_args(["--share", "--auth", "a:b", "--allow-root", str(tmp_path)])
    assert not launch.is_exposed(local) and launch.is_exposed(shared)
    from gradio.utils import get_upload_folder

    roots = launch.allowed_roots(shared.allow_root)
    assert roots == (Path(get_upload_folder()), tmp_path.resolve())


def test_on_spaces_the_demo_listens_on_every_interface_without_a_login(monkeypatch, capsys) -> None:
    import importlib.util

    for name in ("FTAPP_DEMO", "FTAPP_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.setenv("SPACE_ID", "someone/ftapp")
    spec = importlib.util.spec_from_file_location("launch_on_spaces", ROOT / "launch.py")
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)
    parser = launch.build_parser()
    args = parser.parse_args([])

    assert (args.host, args.port) == ("0.0.0.0", 7860) and launch.is_exposed(args)
    assert launch.parse_auth(parser, args, demo=True) is None  # the demo's isolation and caps stand in for a login
    with pytest.raises(SystemExit):
        launch.parse_auth(parser, args)  # the same exposure outside the demo still needs --auth
    with pytest.raises(SystemExit):
        launch.main(["--allow-root", "/srv/data"])  # demo visitors name no server folders
    assert "--allow-root does not apply to the demo" in capsys.readouterr().err
