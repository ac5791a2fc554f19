"""Attacks from a client, over real HTTP against launch.py: named server paths, cookie churn, password guessing.

- An "upload" that names a server path (a host file, another visitor's upload) instead of uploading:
  gradio_client sends the crafted FileData; the demo refuses it with DM-006, a shared app with DS-003,
  and nothing is registered or copied.
- Fresh or forged visitor cookies from one address: the caps hold per address (DM-009), and a cookie
  the server did not sign is not an identity.
- Fifty wrong passwords at once at gradio's login: five are checked, the rest wait (429).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ftapp.demo_kit import DEMO_DATASET, DEMO_MODEL, DEMO_PROMPT
from tests.e2e.conftest import STARTUP_LIMIT_S, Studio, child_env, free_port, stop, wait_for_http_200
from ui.visitors import VISITOR_COOKIE

USER, PASSWORD = "tester", "right-horse-battery"
FILE_DATA = {"_type": "gradio.FileData"}


def crafted(path: str) -> dict:
    """A file object as gradio's API takes it, naming ``path`` instead of uploading anything."""
    return {"path": path, "orig_name": Path(path).name, "meta": FILE_DATA}


def naming(client, path: str):
    """``client`` sends ``crafted(path)`` as is (gradio_client would otherwise upload a local file first)."""
    from gradio_client import client as gradio_client

    class Verbatim:
        def __enter__(self):
            self.upload = gradio_client.Endpoint._upload_file
            gradio_client.Endpoint._upload_file = lambda endpoint, f, data_index: f
            return crafted(path)

        def __exit__(self, *exc):
            gradio_client.Endpoint._upload_file = self.upload

    return Verbatim()


def dataset_names(home: Path) -> set[str]:
    with sqlite3.connect(f"file:{home / 'ftapp.db'}?mode=ro", uri=True) as db:
        return {name for (name,) in db.execute("select name from datasets")}


def uploaded_copies(home: Path, text: str) -> list[Path]:
    """Files under the home's datasets and visitors folders that contain ``text``."""
    found = []
    for folder in (home / "datasets", home / "visitors"):
        for path in folder.rglob("*") if folder.exists() else ():
            if path.is_file() and text in path.read_text(encoding="utf-8", errors="ignore"):
                found.append(path)
    return found


@pytest.fixture(scope="module")
def shared_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """launch.py as a shared app: a non-loopback --host (127.0.0.2, still only this machine) with --auth."""
    base = tmp_path_factory.mktemp("shared-studio")
    home, log_path = base / "home", base / "launch.log"
    port = free_port()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "launch.py",
                "--home",
                str(home),
                "--host",
                "127.0.0.2",
                "--port",
                str(port),
                "--auth",
                f"{USER}:{PASSWORD}",
                "--no-demo",
            ],
            cwd=Path(__file__).resolve().parents[2],
            env=child_env(base / "gradio-cache"),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    studio = Studio(url=f"http://127.0.0.2:{port}/", home=home, log_path=log_path, process=process)
    try:
        wait_for_http_200(studio.url, process, STARTUP_LIMIT_S)
        yield studio
    except BaseException:
        print(f"[e2e] launch.py log tail:\n{studio.log_tail()}")
        raise
    finally:
        stop(process, home)


def test_the_demo_imports_only_files_this_browser_uploaded(demo_studio, tmp_path: Path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import ValidationError

    alice, mallory = Client(demo_studio.url, verbose=False), Client(demo_studio.url, verbose=False)
    secret = tmp_path / "alice-secret.csv"
    secret.write_text("request,intent\nmy card number is 4111-SECRET,card_issue\n")
    assert "Imported **alice-secret**" in alice.predict(handle_file(str(secret)), "alice-secret", "", api_name="/import_upload")
    [alice_copy] = [p for p in (demo_studio.home.parent / "gradio-cache").rglob("alice-secret.csv")]
    before = dataset_names(demo_studio.home)

    for path in (str(alice_copy), str(demo_studio.home / "ftapp.db"), "/etc/passwd"):
        with naming(mallory, path) as file, pytest.raises(ValidationError, match="DM-006: .*not a file this browser uploaded"):
            mallory.predict(file, "stolen", "", api_name="/import_upload")
    # Alice herself may import her upload again (under another name): it is hers.
    with naming(alice, str(alice_copy)) as file:
        assert "Imported **alice-again**" in alice.predict(file, "alice-again", "", api_name="/import_upload")

    assert dataset_names(demo_studio.home) == before | {"alice-again"}
    assert not uploaded_copies(demo_studio.home, "root:x:0:0")
    assert len(uploaded_copies(demo_studio.home, "4111-SECRET")) == 2  # alice's two imports, no one else's


def test_a_shared_app_imports_only_files_this_browser_uploaded(shared_studio, tmp_path: Path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import ValidationError

    owner, other = (Client(shared_studio.url, auth=(USER, PASSWORD), verbose=False) for _ in range(2))
    mine = tmp_path / "owners.csv"
    mine.write_text("request,intent\nowners private row,x\n")
    assert "Imported **owners**" in owner.predict(handle_file(str(mine)), "owners", "", api_name="/import_upload")
    [owners_copy] = list((shared_studio.home.parent / "gradio-cache").rglob("owners.csv"))

    for path in (str(owners_copy), "/etc/passwd"):
        with naming(other, path) as file, pytest.raises(ValidationError, match="DS-003: .*was not uploaded by this browser"):
            other.predict(file, "stolen", "", api_name="/import_upload")
        with naming(other, path) as file, pytest.raises(ValidationError, match="DS-003"):
            other.predict(file, api_name="/import_database")
    assert dataset_names(shared_studio.home) == {"owners"}


def demo_id(client, endpoint: str, name: str) -> str:
    """The id of the shared demo record ``name`` in the table ``endpoint`` lists (its first column is the
    name, its last the id)."""
    table = client.predict(api_name=endpoint)[0]
    return next(row[-1] for row in table["data"] if row[0] == name)


def start_training(client, adapter: str) -> str:
    """One visitor's Start click over the API, by the database's ids: a short LoRA run of the demo kit on
    the CPU (the fields left out take the page's defaults)."""
    return client.predict(
        model_id=demo_id(client, "/list_models", DEMO_MODEL),
        dataset_id=demo_id(client, "/list_datasets", DEMO_DATASET),
        prompt_id=demo_id(client, "/list_prompts", DEMO_PROMPT),
        adapter_name=adapter,
        num_epochs=1.0,
        max_steps=3,
        learning_rate=2e-4,
        batch_size=4,
        grad_accumulation=1,
        max_length=64,
        lora_r=8,
        lora_alpha=16,
        api_name="/start_training",
    )


def test_fresh_or_forged_cookies_from_one_address_do_not_lift_the_caps(demo_studio):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    first, second, third = (Client(demo_studio.url, verbose=False) for _ in range(3))
    cookies = {c.cookies[VISITOR_COOKIE] for c in (first, second, third)}
    assert len(cookies) == 3  # three fresh visitors, as a cleared cookie jar makes them
    queued = [start_training(first, "addr-one"), start_training(second, "addr-two")]
    assert all("Queued run" in text for text in queued)
    with pytest.raises(AppError, match="DM-009: the demo runs at most 2 job"):
        start_training(third, "addr-three")

    # A forged cookie (the first visitor's id, a made-up signature) is no identity: the server issues a
    # new one, and the forger sees none of the first visitor's runs.
    ident = first.cookies[VISITOR_COOKIE].split(".")[0]
    forger = Client(demo_studio.url, headers={"Cookie": f"{VISITOR_COOKIE}={ident}.{'A' * 32}"}, verbose=False)
    assert forger.cookies[VISITOR_COOKIE].split(".")[0] != ident
    assert "addr-one" in str(first.predict("all", None, api_name="/list_runs"))
    assert "addr-one" not in str(forger.predict("all", None, api_name="/list_runs"))

    with sqlite3.connect(f"file:{demo_studio.home / 'ftapp.db'}?mode=ro", uri=True) as db:
        names = {name for (name,) in db.execute("select name from runs")}
    assert "addr-three" not in names and {"addr-one", "addr-two"} <= names  # the two runs take 3 steps each


async def _login_statuses(url: str, attempts: list[tuple[str, str, str | None]]) -> list[httpx.Response]:
    """Logins sent at once: (username, password, X-Forwarded-For or None); every other one as gradio's login
    page sends it (multipart), the rest as gradio_client does (urlencoded)."""
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post(
                    url + "login",
                    headers={"X-Forwarded-For": xff} if xff else {},
                    **({"files": {"username": (None, u), "password": (None, p)}} if i % 2 else {"data": {"username": u, "password": p}}),
                )
                for i, (u, p, xff) in enumerate(attempts)
            )
        )


def test_fifty_wrong_passwords_at_once_are_not_fifty_guesses(shared_studio):
    url = shared_studio.url
    started = time.monotonic()
    answers = asyncio.run(_login_statuses(url, [(USER, f"guess-{i}", None) for i in range(50)]))
    elapsed = time.monotonic() - started
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [400] * 5 + [429] * 45, (statuses, elapsed)
    refused = next(r for r in answers if r.status_code == 429)
    assert "Too many failed logins" in refused.json()["detail"] and int(refused.headers["retry-after"]) >= 1

    # Locked: even the right password is not checked until the wait is over, from this address or
    # (the user name is counted too) from another one; another user name from another address is not held up.
    [right_too_soon, other_address, other_user] = asyncio.run(
        _login_statuses(url, [(USER, PASSWORD, None), (USER, PASSWORD, "203.0.113.50"), ("nobody", "x", "203.0.113.51")])
    )
    assert (right_too_soon.status_code, other_address.status_code, other_user.status_code) == (429, 429, 400)

    time.sleep(int(refused.headers["retry-after"]) + 0.5)
    [right] = asyncio.run(_login_statuses(url, [(USER, PASSWORD, None)]))
    assert right.status_code == 200 and right.json() == {"success": True}
