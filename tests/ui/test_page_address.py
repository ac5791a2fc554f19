"""A reload lands on the tab and run the page's address names (issue 16, item 6): what the server reads back.

The browser half (writing the address, reloading) is tests/e2e/test_runs_page.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import gradio as gr
from gradio.context import LocalContext

from ftapp.services import Services
from ui import build_app, runs, train
from ui.page_address import RUN, TAB, requested, restore_tab

TABS = ("home", "train", "runs")


@contextmanager
def address(**params: str) -> Iterator[None]:
    """An event of a page whose address has ``params`` in its query string, as gradio hands it to a handler."""
    token = LocalContext.request.set(SimpleNamespace(query_params=params))
    try:
        yield
    finally:
        LocalContext.request.reset(token)


def test_the_tab_in_the_address_is_selected_only_when_it_is_one_of_the_page(services: Services) -> None:
    with address(tab="runs"):
        assert restore_tab(TABS).selected == "runs"
    for hostile in ("settings');alert(1)//", "", "RUNS"):
        with address(tab=hostile):
            assert restore_tab(TABS) == gr.skip()
    assert restore_tab(TABS) == gr.skip() and requested(TAB) is None  # outside any event: nothing to restore

    ids = {block.id for block in build_app(services).blocks.values() if isinstance(block, gr.Tab)}
    assert {"home", "runs", "serve", "settings"} <= ids  # the page's tabs have the ids the address uses


def test_a_fresh_page_chooses_the_run_its_address_names(services: Services, train_form: Callable) -> None:
    train.start_training(services, train_form(adapter_name="older"))
    older = runs.list_runs(services).pick.value
    train.start_training(services, train_form(adapter_name="newer"))
    newer = runs.list_runs(services).pick.value

    with address(tab="runs", run=older):
        _, pick, _, newest = runs.show_runs(services, None, None, None)
        assert (pick.value, newest) == (older, newer)
        _, pick, _, _ = runs.show_runs(services, runs.ALL, newer, newer)  # chosen since: the page's choice wins
        assert pick.value == newer
    for unknown in ("0" * 36, "../../etc/passwd"):
        with address(run=unknown):
            assert runs.show_runs(services, None, None, None)[1].value == newer  # not listed: the newest, as without
    assert requested(RUN) is None
