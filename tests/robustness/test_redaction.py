"""One place decides what is secret: config keys that name credentials, and every value
registered for them, masked with their near-copies wherever text is written."""

from __future__ import annotations

import pytest

from fedtextgrad import redaction
from fedtextgrad.redaction import MASK, is_secret_key, mask_settings, redact, redact_data


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(redaction, "_known", set())
    monkeypatch.setattr(redaction, "_grams", set())


def test_credential_keys_are_secret_and_others_not():
    assert all(map(is_secret_key, ["llm.api_key", "api_key", "x.token", "db.password"]))
    assert not any(map(is_secret_key, ["llm.base_url", "train.max_tokens_total", "seed"]))


def test_masking_settings_registers_the_value():
    masked = mask_settings({"llm.api_key": "sk-test-PLANTED-123", "seed": 3})
    assert masked == {"llm.api_key": MASK, "seed": 3}
    assert redact("the key is sk-test-PLANTED-123.") == f"the key is {MASK}."


@pytest.mark.parametrize(
    "echo",
    ["sk-test-PLANTED-12", "sk-test-PLANTED-1234", "sk-test-PLANTEX-123", "PLANTED-123"],
)
def test_near_copies_of_a_key_are_masked(echo):
    redaction.register("sk-test-PLANTED-123")
    assert redact(f"invalid key '{echo}' given") == f"invalid key '{MASK}' given"


def test_a_short_key_is_masked_where_it_stands_alone_only():
    redaction.register("k9x")
    assert redact("bearer k9x rejected; k9xylophone") == f"bearer {MASK} rejected; k9xylophone"


@pytest.mark.parametrize("placeholder", ["EMPTY", "ollama", "none", "test", "x", "1", "-"])
def test_a_placeholder_key_is_no_secret_and_text_is_left_whole(placeholder):
    # What local servers are given: masking it would corrupt answers, prompts and JSON keys.
    redaction.register(placeholder)
    text = '{"test_accuracy": 1, "engine": "openai:ollama"} x - none; EMPTY. Answer: 1'
    assert redact(text) == text


def test_ordinary_text_is_left_alone():
    redaction.register("sk-test-PLANTED-123")
    text = "Think step by step. Count each item, then give the answer as 'Answer: N'."
    assert redact(text) == text


def test_data_is_redacted_all_the_way_down():
    redaction.register("sk-test-PLANTED-123")
    data = {"a": ["x sk-test-PLANTED-123", {"sk-test-PLANTED-123": 1}], "n": 2}
    assert redact_data(data) == {"a": [f"x {MASK}", {MASK: 1}], "n": 2}


def test_a_password_in_the_base_url_is_registered_as_a_secret():
    from fedtextgrad.llm import LLMSettings

    settings = LLMSettings(base_url="https://bob:pw-LONGSECRET9@host/v1")
    assert "LONGSECRET9" not in redact(settings.model_dump_json())
    assert "https://bob:***@host/v1" in redact(settings.model_dump_json())


def test_a_short_password_in_the_base_url_is_masked_however_plain():
    from fedtextgrad import load_config

    config = load_config(
        {
            "task": {"name": "ii_sum"},
            "engines": {"forward": "openai:m"},
            "llm": {"base_url": "http://bob:pw@127.0.0.1:9/v1"},
        }
    )
    assert config.public_dict()["llm"]["base_url"] == "http://bob:***@127.0.0.1:9/v1"
    assert "pw@" not in redact("cannot reach openai:m@http://bob:pw@127.0.0.1:9/v1")
