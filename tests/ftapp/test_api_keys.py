"""The secrets store's API keys (an LLM judge endpoint's): host-only in the demo, never the Hugging Face token."""

from __future__ import annotations

import pytest

from ftapp.demo.policy import DemoCaps
from ftapp.errors import ValidationError
from ftapp.secrets import ApiKeys
from ftapp.visitors import demo_services, services_for_key


def test_a_demo_visitor_can_neither_list_store_nor_delete_the_hosts_keys(services):
    services.api_keys.store("host-key", "sk-host")
    visitor = services_for_key(demo_services(services, DemoCaps()), "a-visitor").api_keys
    for action in (visitor.names, lambda: visitor.store("host-key", "sk-mine"), lambda: visitor.delete("host-key")):
        with pytest.raises(ValidationError) as caught:
            action()
        assert caught.value.rule_ids == ["DM-007"]
    assert services.api_keys.names() == ["host-key"] and services.api_keys.value("host-key") == "sk-host"


def test_the_hugging_face_tokens_variables_are_no_api_key(services, monkeypatch):
    """A judge URL of the sender's choosing plus the key name HF_TOKEN would otherwise send the host's token there."""
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 34)
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-env")
    keys = services.api_keys
    assert keys.value("HF_TOKEN") is None and keys.value("MY_JUDGE_KEY") == "sk-env"
    assert not keys.in_environment("HF_TOKEN") and keys.in_environment("MY_JUDGE_KEY")


def test_names_with_dots_keep_their_own_files_and_a_temporary_file_is_no_key(tmp_path):
    keys = ApiKeys(tmp_path)
    keys.store("judge.tmp", "sk-one")
    keys.store("judge.b", "sk-two")  # its temporary file was once judge.tmp: the other key's
    (tmp_path / "api_keys" / ".judge.c.tmp").write_text("half-written")
    assert keys.names() == ["judge.b", "judge.tmp"]
    assert (keys.value("judge.tmp"), keys.value("judge.b")) == ("sk-one", "sk-two")
