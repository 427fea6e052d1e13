"""API keys never reach results.json, events.jsonl, prompts, the cache, reports or the console,
even when the endpoint fails or quotes the key back in an error."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.scripted import toy_responder

from fedtextgrad import load_config
from fedtextgrad.federated import prepare_data
from fedtextgrad.llm import EngineError, LLMSettings, open_engine
from fedtextgrad.robustness import FaultServer
from fedtextgrad.sweep import load_sweep

CLI = str(Path(sys.executable).with_name("fedtextgrad"))
SECRET = "sk-test-SECRET123"
MARK = "SECRET123"  # any fragment of it is a leak


def config_text(url: str, cache: Path) -> str:
    return f"""seed = 4
[engines]
forward = "openai:toy"
[task]
name = "bbh_object_counting"
train_size = 6
[train]
batch_size = 2
local_steps = 1
[federation]
clients = 3
rounds = 2
attackers = 1
[defense]
enabled = true
[eval]
val_size = 4
test_size = 4
[llm]
base_url = "{url}"
api_key = "{SECRET}"
max_retries = 1
timeout = 30.0
cache_dir = "{cache}"
"""


def leaks(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and MARK.encode() in p.read_bytes()]


def test_the_api_key_appears_in_no_output(tmp_path):
    cfg = load_config(
        {
            "task": {"name": "bbh_object_counting", "train_size": 6},
            "eval": {"val_size": 4, "test_size": 4},
        }
    )
    data = prepare_data(cfg)
    targets = {ex.input: ex.target for ex in data.val + data.test}
    targets |= {ex.input: ex.target for part in data.client_train for ex in part}
    config = tmp_path / "secret.toml"
    with FaultServer(lambda m: toy_responder(m, targets=targets), retry_after=0) as server:
        config.write_text(config_text(server.url, tmp_path / "cache"))
        server.every(7, "503", "429", times=4)  # retried faults along the way
        ok = subprocess.run(
            [CLI, "run", str(config), "--out", str(tmp_path / "run")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ok.returncode == 0, ok.stderr
        report = subprocess.run(
            [CLI, "report", str(tmp_path / "run"), "--out", str(tmp_path / "report")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        # An endpoint that quotes the key back in every error: the run fails, in one line.
        server.always = "echo_key"
        failed = subprocess.run(
            [
                CLI,
                "run",
                str(config),
                "--out",
                str(tmp_path / "failed"),
                "--set",
                "llm.cache=false",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        sent = {seen.headers.get("authorization") for seen in server.requests}
    assert sent == {f"Bearer {SECRET}"}  # the key was really used ...
    assert failed.returncode == 4 and "may not use this model" in failed.stderr
    assert "***" in failed.stderr
    for done in (ok, report, failed):  # ... and shown nowhere
        assert MARK not in done.stdout + done.stderr
    assert (tmp_path / "run" / "results.json").is_file() and (tmp_path / "failed").is_dir()
    assert leaks(tmp_path / "run") == [] and leaks(tmp_path / "failed") == []
    assert leaks(tmp_path / "cache") == [] and leaks(tmp_path / "report") == []
    assert '"api_key": "**********"' in (tmp_path / "run" / "results.json").read_text()


def test_a_sweep_over_keys_shows_none_of_them(tmp_path):
    """Keys in a sweep's [set] and [grid], and a key an endpoint echoes inside a good reply."""
    other = "sk-test-OTHERKEY456"
    with FaultServer(lambda m: "Let me think.\nAnswer: 3", retry_after=0) as server:
        server.every(3, "echo_key_reply")
        base = tmp_path / "base.toml"
        base.write_text(
            config_text(server.url, tmp_path / "cache").replace(f'api_key = "{SECRET}"\n', "")
        )
        sweep = tmp_path / "keys.toml"
        sweep.write_text(
            f'base = "base.toml"\n[set]\n"llm.api_key" = "{SECRET}"\n'
            f'[grid]\n"llm.api_key" = ["{SECRET}", "{other}"]\n'
            '"federation.rounds" = [1]\n'
        )
        done = subprocess.run(
            [CLI, "sweep", str(sweep), "--out", str(tmp_path / "sweep")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        sent = {seen.headers.get("authorization") for seen in server.requests}
        echoed = [seen for seen in server.requests if seen.fault == "echo_key_reply"]
    assert done.returncode == 0, done.stderr
    assert sent == {f"Bearer {SECRET}", f"Bearer {other}"}  # each run used its own key
    assert echoed  # replies that quoted all but the key's last character
    assert "2 runs: 2 ran" in done.stdout
    for mark in ("SECRET12", "OTHERKEY45"):
        assert mark not in done.stdout + done.stderr
        files = [*(tmp_path / "sweep").rglob("*"), *(tmp_path / "cache").rglob("*")]
        assert [p for p in files if p.is_file() and mark.encode() in p.read_bytes()] == []
    names = sorted(
        p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name != "report"
    )
    assert names == ["api_key=secret-1__rounds=1__seed=0", "api_key=secret-2__rounds=1__seed=0"]


def test_a_sweep_manifest_and_run_names_mask_keys_wherever_the_sweep_sets_them(tmp_path):
    # Masked where they are written, not only by the redaction of every written file.
    (tmp_path / "base.toml").write_text('[task]\nname = "bbh_object_counting"\n')
    (tmp_path / "keys.toml").write_text(
        f'base = "base.toml"\n[set]\n"llm.api_key" = "{SECRET}"\n'
        '[grid]\n"llm.api_key" = ["sk-test-GRIDKEY45", "sk-test-GRIDKEY67"]\n'
        '[variants.other.llm]\napi_key = "sk-test-VARIANT89"\n'
    )
    sweep = load_sweep(tmp_path / "keys.toml")
    shown = json.dumps(sweep.manifest(tmp_path)) + " ".join(run.name for run in sweep.runs)
    for mark in (MARK, "GRIDKEY", "VARIANT89"):
        assert mark not in shown
    assert sweep.runs[0].config.llm.api_key.get_secret_value() == "sk-test-GRIDKEY45"


@pytest.mark.parametrize("key", [SECRET, "k9x-42"])  # short keys too: they were left in
def test_a_key_echoed_in_an_error_body_is_masked(key):
    async def ask() -> str:
        llm = open_engine("openai:m", LLMSettings(base_url=server.url, api_key=key, **settings))
        try:
            return await llm.ask("How many?", purpose="forward")
        finally:
            await llm.aclose()

    settings = {"cache": False, "max_retries": 0, "timeout": 10.0}
    with FaultServer(lambda m: "Answer: 3", retry_after=0) as server:
        server.inject("echo_key")
        with pytest.raises(EngineError, match="may not use this model") as caught:
            asyncio.run(ask())
    assert key not in str(caught.value) and "key *** may not" in str(caught.value)
