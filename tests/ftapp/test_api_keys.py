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


def test_only_variables_named_like_an_api_key_are_api_keys(services, monkeypatch):
    """A judge URL of the sender's choosing plus the name of any host variable (HF_TOKEN, cloud credentials, a
    database URL) would otherwise send its value there."""
    host = {"HF_TOKEN": "hf_" + "x" * 34, "AWS_SECRET_ACCESS_KEY": "aws-secret", "DATABASE_URL": "postgres://u:p@h/db"}
    for name, value in {**host, "MY_JUDGE_API_KEY": "sk-env"}.items():
        monkeypatch.setenv(name, value)
    keys = services.api_keys
    assert [keys.value(name) for name in host] == [None, None, None] and keys.value("MY_JUDGE_API_KEY") == "sk-env"
    assert not any(keys.in_environment(name) for name in host) and keys.in_environment("MY_JUDGE_API_KEY")
    keys.store("AWS_SECRET_ACCESS_KEY", "sk-stored")  # a stored key of that name is the store's, not the variable's
    assert keys.value("AWS_SECRET_ACCESS_KEY") == "sk-stored"


def test_names_with_dots_keep_their_own_files_and_a_temporary_file_is_no_key(tmp_path):
    keys = ApiKeys(tmp_path)
    keys.store("judge.tmp", "sk-one")
    keys.store("judge.b", "sk-two")  # its temporary file was once judge.tmp: the other key's
    (tmp_path / "api_keys" / ".judge.c.tmp").write_text("half-written")
    assert keys.names() == ["judge.b", "judge.tmp"]
    assert (keys.value("judge.tmp"), keys.value("judge.b")) == ("sk-one", "sk-two")
