"""The studio as a user meets it: launch.py in a subprocess on a fresh home, driven by headless Chromium.

Fixtures are module-scoped: one app and one browser per test module. Playwright is imported
lazily, so collecting the whole suite never needs it; the browser fixture skips only when the
Chromium binary is absent.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Debian's packages of the fonts that screenshots need for emoji (the status icons are emoji too) and CJK text:
# without them Chromium draws each such character as the same empty box. .ci/run installs them.
GLYPH_FONTS = {"fonts-noto-color-emoji": "Noto Color Emoji", "fonts-noto-cjk": "Noto Sans CJK"}
STARTUP_LIMIT_S = 90
STOP_GRACE_S = 15
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_ACCESS_TOKEN")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder starts launch.py (most a browser too): all are `slow`, new files included."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.slow)


@dataclass(frozen=True)
class Studio:
    url: str
    home: Path
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""


def missing_glyph_fonts() -> list[str]:
    """The packages of ``GLYPH_FONTS`` whose font fontconfig (which Chromium asks) does not know."""
    try:
        known = subprocess.run(["fc-list", ":", "family"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return list(GLYPH_FONTS)
    return [package for package, family in GLYPH_FONTS.items() if family not in known]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARIABLES and k != "FTAPP_HOME"}
    # Uploads land in gradio's cache: keep it in the test's own folder, not a shared /tmp/gradio.
    env.update(
        HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(scratch), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1"
    )
    return env


def wait_for_http_200(url: str, process: subprocess.Popen, limit_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if process.poll() is not None:
            raise RuntimeError(f"launch.py exited with status {process.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer 200 within {limit_s} s")


def processes_under(home: Path) -> list[int]:
    """Pids of processes working in ``home`` (trainers: their cwd is the run directory, their argv its spec).

    Trainers run in their own sessions (they outlive the app by design), so stopping launch.py's
    process group does not reach them; they are found by the home this test created.
    """
    marker = str(home)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in argv or cwd == marker or cwd.startswith(marker + os.sep):
            found.append(int(entry.name))
    return found


def stop(process: subprocess.Popen, home: Path) -> list[int]:
    """Stop the app, then any trainer it left behind; returns the pids that had to be killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_GRACE_S)
    else:
        try:  # anything else left in the app's own group
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    leftovers = processes_under(home)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_GRACE_S
    while processes_under(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    return leftovers


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """launch.py on a free port with a fresh, empty home (no background demo build); yields its URL."""
    base = tmp_path_factory.mktemp("studio")
    home, log_path = base / "home", base / "launch.log"
    port = free_port()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "launch.py", "--home", str(home), "--port", str(port), "--no-demo"],
            cwd=ROOT,
            env=child_env(base / "gradio-cache"),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    studio = Studio(url=f"http://127.0.0.1:{port}/", home=home, log_path=log_path, process=process)
    try:
        startup_s = wait_for_http_200(studio.url, process, STARTUP_LIMIT_S)
        print(f"\n[e2e] launch.py served {studio.url} after {startup_s:.1f} s (home {home})")
        yield studio
    except BaseException:
        print(f"[e2e] launch.py log tail:\n{studio.log_tail()}")
        raise
    finally:
        leftovers = stop(process, home)
        if leftovers:
            print(f"[e2e] killed processes left under the home: {leftovers}")
        assert not processes_under(home), "processes under the test home survived the teardown"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium per module (the system binary; never a downloaded one)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent (install the Debian package 'chromium' to run the browser tests)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser, studio: Studio) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=False)
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $FTAPP_E2E_SHOTS, else a pytest temporary directory."""
    chosen = os.environ.get("FTAPP_E2E_SHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("shots")
    folder.mkdir(parents=True, exist_ok=True)
    if missing := missing_glyph_fonts():
        print(f"[e2e] emoji and CJK will show as empty boxes in the screenshots: apt-get install {' '.join(missing)}")
    return folder


@pytest.fixture(scope="module")
def demo_studio(tmp_path_factory: pytest.TempPathFactory, demo_kit) -> Iterator[Studio]:
    """launch.py as the public demo (FTAPP_DEMO=1, as on Hugging Face Spaces) on a fresh home. The
    session's demo kit is put where the start-up build looks first, so that the build only registers
    it (building it again costs ~30 s on two cores); yields once the demo is registered."""
    base = tmp_path_factory.mktemp("demo-studio")
    home, log_path = base / "home", base / "launch.log"
    shutil.copytree(Path(demo_kit.model_dir).parent, home / "models" / "demo-tiny-llama")
    port = free_port()
    env = {**child_env(base / "gradio-cache"), "FTAPP_DEMO": "1", "FTAPP_MLFLOW": "0"}
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "launch.py", "--home", str(home), "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    studio = Studio(url=f"http://127.0.0.1:{port}/", home=home, log_path=log_path, process=process)
    try:
        wait_for_http_200(studio.url, process, STARTUP_LIMIT_S)
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while "offline demo registered" not in studio.log_tail() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "offline demo registered" in studio.log_tail(), studio.log_tail()
        yield studio
    except BaseException:
        print(f"[e2e] launch.py log tail:\n{studio.log_tail()}")
        raise
    finally:
        stop(process, home)
        assert not processes_under(home), "processes under the demo home survived the teardown"
