"""``ftapp secrets``: a judge endpoint's API key goes in through stdin or a silent prompt, and only its name comes out."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path

import pytest

from cli.main import main

KEY = "sk-test-" + "Qx7" * 12


def cli(capsys, *argv: str, stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str]:
    if stdin is not None and monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_key_is_stored_from_stdin_listed_by_name_only_and_deleted(tmp_path, capsys, monkeypatch):
    home = str(tmp_path / "home")
    code, out = cli(capsys, "--home", home, "secrets", "set", "judge-key", stdin=KEY + "\n", monkeypatch=monkeypatch)
    stored = Path(home) / "secrets" / "api_keys" / "judge-key"
    assert code == 0 and "judge-key" in out and KEY not in out
    assert stored.read_text() == KEY and stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700

    code, out = cli(capsys, "--home", home, "secrets", "list", "--json")
    assert code == 0 and json.loads(out) == [{"name": "judge-key", "overridden_by_environment": False}] and KEY not in out
    monkeypatch.setenv("judge-key", "from-the-environment")  # not named like an API key: the host's, not a key
    assert json.loads(cli(capsys, "--home", home, "secrets", "list", "--json")[1])[0]["overridden_by_environment"] is False
    cli(capsys, "--home", home, "secrets", "set", "JUDGE_API_KEY", stdin=KEY + "\n", monkeypatch=monkeypatch)
    monkeypatch.setenv("JUDGE_API_KEY", "from-the-environment")  # a key's name the environment also has wins, list says so
    listed = json.loads(cli(capsys, "--home", home, "secrets", "list", "--json")[1])
    assert listed == [
        {"name": "JUDGE_API_KEY", "overridden_by_environment": True},
        {"name": "judge-key", "overridden_by_environment": False},
    ]

    assert cli(capsys, "--home", home, "secrets", "delete", "judge-key") == (0, "deleted API key 'judge-key'\n")
    assert not stored.exists()
    code, out = cli(capsys, "--home", home, "secrets", "delete", "judge-key")
    assert code == 2 and "SK-001" in out and "not found" in out


def test_a_terminal_is_asked_without_echo(tmp_path, capsys, monkeypatch):
    asked: list[str] = []
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or KEY)
    code, out = cli(capsys, "--home", str(tmp_path / "home"), "secrets", "set", "judge")
    assert code == 0 and asked == ["API key for judge (not shown): "] and KEY not in out
    assert (tmp_path / "home" / "secrets" / "api_keys" / "judge").read_text() == KEY


@pytest.mark.parametrize(
    ("argv", "stdin", "said"),
    [
        (("set", "judge", KEY), "", "never from the command line"),  # argparse would have printed the key back
        (("set", "../../outside"), KEY, "SK-001: an API key's name"),
        (("set", "judge"), "", "SK-001: the API key is empty"),
        (("set", "judge"), "sk-one two\n", "SK-001: the API key must be one line"),
        (("set", "judge"), "x" * 5000, "SK-001: the API key has 5,000 characters"),
    ],
    ids=["key in argv", "path in the name", "empty", "spaces", "too long"],
)
def test_bad_keys_and_names_are_refused_with_nothing_written_or_echoed(tmp_path, capsys, monkeypatch, argv, stdin, said):
    home = tmp_path / "home"
    code, out = cli(capsys, "--home", str(home), "secrets", *argv, stdin=stdin, monkeypatch=monkeypatch)
    assert code == 2 and said in out
    assert KEY not in out and "sk-one" not in out
    assert not (home / "secrets" / "api_keys").exists() or list((home / "secrets" / "api_keys").iterdir()) == []
    assert not (tmp_path / "outside").exists()
