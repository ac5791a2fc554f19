"""Rule ids live in ftapp/rules.py only: code names a rule by its symbol (``rules.ADAPTER_NAME``).

A typed id ("FT-002") in ftapp, ui or cli would escape the catalogue: a typo fires a rule nobody
documented or tested. Docstrings and comments may still mention ids; they are prose.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ftapp import rules
from ftapp.errors import Problem
from ftapp.rules import RULES, Rule

ROOT = Path(__file__).resolve().parents[2]
RULE_ID = re.compile(r"^[A-Z]{2}-\d{3}[a-z]?$")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def typed_rule_ids() -> list[str]:
    hits = []
    for top in ("ftapp", "ui", "cli"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == ROOT / "ftapp" / "rules.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docs = _docstrings(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and RULE_ID.match(node.value) and id(node) not in docs:
                    hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
    return hits


def test_code_names_rules_by_symbol_not_by_typed_id():
    assert typed_rule_ids() == []


def test_every_rule_symbol_is_catalogued_once():
    symbols = {name: value for name, value in vars(rules).items() if isinstance(value, Rule)}
    assert sorted(rule.id for rule in symbols.values()) == sorted(RULES)
    assert len(set(rule.id for rule in symbols.values())) == len(symbols), "two symbols share an id"
    assert all(RULE_ID.match(rule_id) for rule_id in RULES)


def test_a_problem_refuses_a_typed_id():
    try:
        Problem("FT-002", "adapter_name must match")  # type: ignore[arg-type]
    except TypeError as error:
        assert "ftapp.rules" in str(error)
    else:
        raise AssertionError("a typed id was accepted")
    assert str(Problem(rules.ADAPTER_NAME, "adapter_name must match")) == "FT-002: adapter_name must match"
