"""Whole runs against the real HTTP fault server (`openai:` engines): faults are survived and
recorded, an outage keeps completed work, and a server killed mid-round resumes from the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers.scripted import toy_responder

from fedtextgrad import FedTextGradError, load_config, run_async
from fedtextgrad.federated import prepare_data
from fedtextgrad.robustness import FaultServer
from fedtextgrad.robustness.fault_server import TRANSIENT

pytest_plugins = ["fault_fixtures"]  # the `server` and `no_backoff` fixtures

CLI = str(Path(sys.executable).with_name("fedtextgrad"))


def settings(url: str, **llm) -> dict:
    return {
        "seed": 2,
        "engines": {"forward": "openai:toy"},
        "task": {"name": "bbh_object_counting", "train_size": 6},
        "train": {"batch_size": 2, "local_steps": 1},
        "federation": {"clients": 2, "rounds": 3, "aggregation": "uid_summarize"},
        "eval": {"val_size": 4, "test_size": 4},
        "llm": {"base_url": url, "api_key": "sk-local", "timeout": 3.0, "cache": False, **llm},
    }


def toy_server() -> FaultServer:
    """The scripted toy world, served over HTTP."""
    data = prepare_data(load_config(settings("http://unused")))
    targets = {ex.input: ex.target for ex in data.val + data.test}
    targets |= {ex.input: ex.target for part in data.client_train for ex in part}
    return FaultServer(lambda messages: toy_responder(messages, targets=targets), retry_after=0)


def outcome(results) -> list:
    return [(r["global_prompt"], r["val_accuracy"]) for r in results.rounds] + [
        results.data["final"]["test_accuracy"]
    ]


def test_a_run_on_a_flaky_endpoint_completes_records_faults_and_matches_a_clean_run(
    tmp_path, no_backoff
):
    with toy_server() as server:
        clean = asyncio.run(run_async(load_config(settings(server.url)), tmp_path / "clean"))
        server.every(3, *TRANSIENT, times=len(TRANSIENT))  # every fault kind, spread over the run
        cfg = load_config(settings(server.url, max_retries=len(TRANSIENT)))
        flaky = asyncio.run(run_async(cfg, tmp_path / "flaky"))
        served = [seen.fault for seen in server.requests if seen.fault]
    assert sorted(served) == sorted(TRANSIENT)
    saved = json.loads((tmp_path / "flaky" / "results.json").read_text())
    assert saved["status"] == "complete"
    # One retry per fault (a reply slowed past the timeout by a busy machine adds one more).
    assert saved["usage"]["retries"] >= len(TRANSIENT) and saved["usage"]["errors"] == 0
    assert outcome(flaky) == outcome(clean)  # faults cost time, never results


def test_an_outage_stops_the_run_keeps_done_rounds_and_resume_finishes(tmp_path, no_backoff):
    with toy_server() as server:
        cfg = load_config(settings(server.url, max_retries=1))
        reference = asyncio.run(run_async(cfg, tmp_path / "reference"))

        def go_down_after_round_1(event):
            if event["event"] == "round" and event["round"] == 1:
                server.always = "503"

        with pytest.raises(FedTextGradError) as caught:
            asyncio.run(run_async(cfg, tmp_path / "run", on_event=go_down_after_round_1))
        assert "round 2: only 0 of 2 clients replied" in str(caught.value)
        assert "server error 503 (gave up after 2 attempts" in str(caught.value)
        saved = json.loads((tmp_path / "run" / "results.json").read_text())
        assert len(saved["rounds"]) == 1 and saved["errors"][0]["rounds_done"] == 1

        server.always = None  # the endpoint is back
        resumed = asyncio.run(run_async(cfg, tmp_path / "run", resume=True))
    assert resumed.rounds[0] == saved["rounds"][0]
    assert outcome(resumed) == outcome(reference)


def write_config(path: Path, url: str, cache: Path) -> Path:
    cfg = settings(url, cache=True, cache_dir=str(cache))
    lines = [f"seed = {cfg.pop('seed')}"]
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)


def test_a_server_killed_mid_round_resumes_to_the_same_result(tmp_path):
    """SIGKILL the `fedtextgrad run` process while round 2 is in flight, then --resume."""
    with toy_server() as server:
        reference_cfg = write_config(tmp_path / "reference.toml", server.url, tmp_path / "c1")
        assert cli("run", str(reference_cfg), "--out", str(tmp_path / "reference")).returncode == 0

        out = tmp_path / "run"
        in_round_2, release = threading.Event(), threading.Event()
        answer = server.responder

        def hold_round_2(messages):
            results = out / "results.json"
            if results.exists() and json.loads(results.read_text())["rounds"]:
                in_round_2.set()  # round 1 is saved: this is a round-2 request
                release.wait(60)
            return answer(messages)

        server.responder = hold_round_2
        cfg = write_config(tmp_path / "run.toml", server.url, tmp_path / "c2")
        process = subprocess.Popen(
            [CLI, "run", str(cfg), "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert in_round_2.wait(120), "the run never reached round 2"
            process.kill()  # SIGKILL: no cleanup, no atexit, no flush
            assert process.wait(30) == -9
        finally:
            process.kill()
            server.responder = answer
            release.set()
        killed = json.loads((out / "results.json").read_text())
        assert killed["status"] == "running" and len(killed["rounds"]) == 1

        done = cli("run", str(cfg), "--out", str(out), "--resume")
    assert done.returncode == 0, done.stderr
    resumed = json.loads((out / "results.json").read_text())
    reference = json.loads((tmp_path / "reference" / "results.json").read_text())
    assert resumed["status"] == "complete" and resumed["rounds"][0] == killed["rounds"][0]
    strip = lambda r: [(x["global_prompt"], x["val_accuracy"]) for x in r["rounds"]]  # noqa: E731
    assert strip(resumed) == strip(reference)
    assert resumed["final"]["test_accuracy"] == reference["final"]["test_accuracy"]
    assert not list(out.glob(".results.json.*"))  # no half-written checkpoint left behind


def test_the_cli_stops_at_the_budget_in_one_line_and_resumes_with_a_larger_one(tmp_path):
    with toy_server() as server:
        cfg, out = write_config(tmp_path / "run.toml", server.url, tmp_path / "c"), tmp_path / "r"
        stopped = cli("run", str(cfg), "--out", str(out), "--set", "llm.budget_tokens=1")
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped at the token budget after round 0 of 3" in stopped.stdout
        assert json.loads((out / "results.json").read_text())["status"] == "budget"
        more = ("--set", "llm.budget_tokens=1000000000")
        done = cli("run", str(cfg), "--out", str(out), "--resume", *more)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "results.json").read_text())["status"] == "complete"
