"""``ftapp secrets``: the API keys an LLM judge's endpoint takes, stored by name (0600, never in the database).

A key is read from standard input, or from a prompt that does not echo it, never from the command line, where
it would stay in the shell's history and in every process listing. ``list`` prints names, never values.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from cli.output import table, to_json
from ftapp.errors import FtappError
from ftapp.services import Services

# Said instead of argparse's "unrecognized arguments: <the key>", which would print the key back.
KEY_IN_ARGV = (
    "the key is read from standard input or a hidden prompt, never from the command line (it would stay in the "
    "shell's history): `ftapp secrets set NAME` and paste it, or `printenv MY_KEY | ftapp secrets set NAME`"
)


def add_secrets_parser(groups, common: argparse.ArgumentParser) -> None:
    secrets = groups.add_parser("secrets", help="API keys for an LLM judge's endpoint (stored 0600, never in the database)")
    actions = secrets.add_subparsers(dest="action")
    store = actions.add_parser("set", help="store a key under NAME: read from standard input, or a prompt that does not echo it")
    store.add_argument("name", help="the name a judge refers to (--judge-key NAME)")
    store.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    actions.add_parser("list", parents=[common], help="the names of the stored keys (never their values)")
    actions.add_parser("delete", help="remove a stored key").add_argument("name")


def run_secrets(services: Services, args: argparse.Namespace) -> None:
    keys = services.api_keys
    if args.action == "set":
        if args.rest:
            raise FtappError(KEY_IN_ARGV)
        key = getpass.getpass(f"API key for {args.name} (not shown): ") if sys.stdin.isatty() else sys.stdin.readline()
        path = keys.store(args.name, key)
        print(f"stored API key '{args.name}' with permissions 0600 in {path}")
    elif args.action == "delete":
        keys.delete(args.name)
        print(f"deleted API key '{args.name}'")
    else:
        rows = [{"name": name, "overridden_by_environment": keys.in_environment(name)} for name in keys.names()]
        print(to_json(rows) if args.json else table(rows, ["name", "overridden_by_environment"]))
