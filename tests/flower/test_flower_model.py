"""Runs on a real local Flower deployment (a SuperLink and one SuperNode per client: separate
processes talking over 127.0.0.1) with the real 0.5B model, at tiny sizes.

CI runs the resume test (a Flower run, interrupted and resumed, against the in-process one); the
others are `slow`. The tests share one response cache: the in-process run fills it, and the
Flower runs that follow replay the same requests, so they cost little model time (and must match
it exactly)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("flwr")

from fedtextgrad import load_config, run_async  # noqa: E402

pytestmark = pytest.mark.model
CLI = str(Path(sys.executable).with_name("fedtextgrad"))
TINY = """
seed = 0
[engines]
forward = "local:qwen2.5-coder-0.5b"
[task]
name = "ii_singular_to_plural"
train_size = 4
[train]
batch_size = 2
local_steps = 1
forward_max_tokens = 32
feedback_max_tokens = 96
update_max_tokens = 128
[federation]
clients = 2
rounds = 2
aggregation = "uid_summarize"
[eval]
val_size = 2
test_size = 2
[llm]
n_parallel = 2
n_ctx = 2048
threads = 1
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """A directory for the module: the tiny config and the response cache all tests share."""
    root = tmp_path_factory.mktemp("flower")
    (root / "tiny.toml").write_text(TINY + f'cache_dir = "{root / "cache"}"\n')
    return root


@pytest.fixture(scope="module")
def in_process(shared) -> dict:
    """The reference: the tiny experiment run in-process (it also warms the shared cache)."""
    return asyncio.run(run_async(tiny(shared), shared / "in-process")).data


def tiny(shared: Path, *overrides: str):
    return load_config(shared / "tiny.toml", list(overrides))


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def flower_processes(run_dir: Path) -> list:
    """Live processes running with an FLWR_HOME inside this run directory (all of Flower's)."""
    home = str(run_dir.resolve() / "flower")
    found = []
    for process in psutil.process_iter():
        try:
            ours = process.environ().get("FLWR_HOME", "").startswith(home)
            if ours and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


def saved_rounds(run_dir: Path) -> list[dict]:
    path = run_dir / "results.json"
    return json.loads(path.read_text())["rounds"] if path.exists() else []


def events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    return [json.loads(line) for line in path.open()] if path.exists() else []


@pytest.mark.slow
def test_in_process_and_flower_give_the_same_prompts_round_by_round(shared, in_process):
    local = in_process
    flower = asyncio.run(run_async(tiny(shared), shared / "flower", runtime="flower")).data
    assert len(flower["rounds"]) == len(local["rounds"]) == 2
    for mine, theirs in zip(flower["rounds"], local["rounds"], strict=True):
        assert mine["global_prompt"] == theirs["global_prompt"]
        assert [c["prompt"] for c in mine["clients"]] == [c["prompt"] for c in theirs["clients"]]
        assert mine["failures"] == []
    assert flower["final"]["prompt"] == local["final"]["prompt"]
    # Every request of the Flower run, the clients' included, was one the in-process run made.
    usage = flower["usage"]
    assert usage["calls"] == local["usage"]["calls"] == usage["cache_hits"] > 0
    assert flower_processes(shared / "flower") == []


@pytest.mark.slow
def test_cli_runs_two_clients_for_one_round_on_flower_and_leaves_no_process(
    shared, in_process, tmp_path
):
    out = tmp_path / "run"
    done = subprocess.run(
        [CLI, "run", str(shared / "tiny.toml"), "--runtime", "flower", "--out", str(out),
         "--set", "federation.rounds=1"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((out / "results.json").read_text())
    assert data["status"] == "complete" and data["config"]["federation"]["rounds"] == 1
    (entry,) = data["rounds"]
    assert [c["client"] for c in entry["clients"]] == [0, 1] and entry["failures"] == []
    assert all(c["steps"] and c["num_examples"] == 2 for c in entry["clients"])
    assert (
        entry["global_prompt"].strip() and data["final"]["last"]["prompt"] == entry["global_prompt"]
    )
    assert {"forward", "feedback", "update", "evaluation"} <= data["usage"]["by_purpose"].keys()
    assert (out / "prompts" / "final.txt").exists()
    pids = json.loads((out / "flower" / "processes.json").read_text())
    assert set(pids) == {"superlink", "supernode-0", "supernode-1", "flwr-run"}
    assert not any(alive(pid) for pid in pids.values())
    assert flower_processes(out) == []
    last = done.stdout.strip().splitlines()[-1]  # the paired result line
    assert re.fullmatch(r"test \d\.\d\d -> \d\.\d\d \(.* pts, 95% CI .*, n=\d+\)", last), last


@pytest.mark.slow
def test_a_supernode_killed_mid_round_is_recorded_and_the_round_completes(
    shared, in_process, tmp_path
):
    out = tmp_path / "run"
    cfg = tiny(
        shared,
        "federation.rounds=1",
        "federation.min_clients=1",
        "federation.round_timeout=90",
    )
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["results"] = asyncio.run(run_async(cfg, out, runtime="flower")).data
        except BaseException as error:  # reported by the assertions below
            outcome["error"] = error

    runner = threading.Thread(target=run)
    runner.start()
    victim = _kill_supernode_once_it_trains(out, client=1, runner=runner)
    runner.join(timeout=900)
    assert "error" not in outcome, outcome.get("error")
    assert victim is not None, "the round ended before the SuperNode could be killed"
    data = outcome["results"]
    (entry,) = data["rounds"]
    assert [c["client"] for c in entry["clients"]] == [0]
    assert [f["client"] for f in entry["failures"]] == [1]
    assert data["status"] == "complete"
    assert any(e["event"] == "client_failure" and e["client"] == 1 for e in events(out))
    assert not alive(victim) and flower_processes(out) == []


def _kill_supernode_once_it_trains(out: Path, client: int, runner: threading.Thread):
    """SIGKILL SuperNode `client` (its whole process group) while round 1 is under way: once
    the server has sent the round's messages (the `nodes` event) and, if it shows up within a
    few seconds, once its ClientApp process is running."""
    while runner.is_alive() and not any(e["event"] == "nodes" for e in events(out)):
        time.sleep(0.1)
    if not runner.is_alive():
        return None
    pid = json.loads((out / "flower" / "processes.json").read_text())[f"supernode-{client}"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _running_clientapp(pid):
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return pid


def _running_clientapp(supernode: int) -> bool:
    try:
        below = psutil.Process(supernode).children(recursive=True)
        return any("flwr-clientapp" in " ".join(p.cmdline()) for p in below)
    except psutil.Error:
        return False


def test_an_interrupted_flower_run_resumes_where_it_stopped(shared, in_process, tmp_path):
    out = tmp_path / "run"
    command = [CLI, "run", str(shared / "tiny.toml"), "--runtime", "flower", "--out", str(out)]
    first = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with Ctrl-C ignored, and children inherit that: give
        # the run the terminal's default, so the test holds however pytest was launched.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    while first.poll() is None and len(saved_rounds(out)) < 1:
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)  # Ctrl-C after round 1 is saved
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr[-2000:]
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "running" and len(saved["rounds"]) == 1
    assert flower_processes(out) == []
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((out / "results.json").read_text())
    assert data["status"] == "complete" and len(data["rounds"]) == 2
    assert data["rounds"][0] == saved["rounds"][0]
    assert [r["global_prompt"] for r in data["rounds"]] == [
        r["global_prompt"] for r in in_process["rounds"]
    ]
    assert flower_processes(out) == []
