"""The benchmark tools work: the latency server's replies pass FedTextGrad's parsers, the critical
path is computed from a call graph as specified, and the quick orchestration benchmark runs end
to end. Correctness only: nothing here asserts a duration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedtextgrad.federated.aggregators import SUMMARIZE
from fedtextgrad.tasks import load_task
from fedtextgrad.textgrad import Objective, templates
from fedtextgrad.textgrad.step import parse_update

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from benchlib import critical_path  # noqa: E402
from latency_server import Settings, guess_purpose, reply_text  # noqa: E402


@pytest.fixture
def objective() -> Objective:
    return Objective.of(load_task("bbh_object_counting", train_size=3, val_size=3, test_size=3))


def test_forward_replies_end_with_the_answer_the_server_chose(objective):
    task = next(iter(objective.tasks.values()))
    example = task.train[0]
    messages = [
        {"role": "system", "content": objective.initial_prompt},
        {"role": "user", "content": example.input},
    ]
    right = Settings(accuracy=1.0, answers={example.input: example.target})
    wrong = Settings(accuracy=0.0, answers={example.input: example.target})
    assert guess_purpose(messages) == "forward"
    assert objective.score(example, reply_text(messages, "forward", right)) == 1.0
    assert objective.score(example, reply_text(messages, "forward", wrong)) == 0.0


def test_update_replies_pass_the_update_parser(objective):
    request = templates.UPDATE.format(
        role=objective.role,
        prompt=objective.initial_prompt,
        wrong=2,
        total=3,
        feedback="Count only the items of the asked kind.",
        memory="",
        rules=templates.rules_block(templates.update_rules(500), objective.answer_format),
    )
    messages = [
        {"role": "system", "content": templates.UPDATE_SYSTEM},
        {"role": "user", "content": request},
    ]
    assert guess_purpose(messages) == "update"
    candidate, problem = parse_update(reply_text(messages, "update", Settings()), objective, 4000)
    assert candidate is not None, problem
    assert candidate.endswith(objective.answer_format)


def test_merge_and_feedback_requests_are_recognised(objective):
    merge = SUMMARIZE.format(role=objective.role, principle="", prompts="<CLIENT_PROMPT 1>")
    merge_messages = [{"role": "user", "content": merge}]
    assert guess_purpose(merge_messages) == "aggregation"
    assert "<MERGED_PROMPT>" in reply_text(merge_messages, "aggregation", Settings())
    feedback = [
        {"role": "system", "content": templates.FEEDBACK_SYSTEM},
        {"role": "user", "content": "..."},
    ]
    assert guess_purpose(feedback) == "feedback"


def _entry(delay: float, guess: str = "forward", **tag) -> dict:
    """A log entry: the server's purpose guess, and the tag the client sent."""
    return {"delay": delay, "purpose": guess, "tag": json.dumps(tag)}


def test_critical_path_follows_the_dependency_structure():
    log = [
        _entry(1.0, phase="initial", purpose="evaluation"),
        _entry(2.0, phase="initial", purpose="test"),  # val ∥ test: 2
        # round 1, client 0: step 1 = max forward 3 + feedback 1 + updates 1+1 + gate 2 = 8
        _entry(3.0, phase="round", round=1, client=0, step=1, purpose="forward"),
        _entry(1.0, phase="round", round=1, client=0, step=1, purpose="forward"),
        _entry(1.0, "feedback", phase="round", round=1, client=0, step=1, purpose="feedback"),
        _entry(1.0, "update", phase="round", round=1, client=0, step=1, purpose="update"),
        _entry(1.0, "update", phase="round", round=1, client=0, step=1, purpose="update"),
        _entry(2.0, phase="round", round=1, client=0, step=1, purpose="gate"),
        # client 1: two steps of forward 5 each = 10: the slowest client
        _entry(5.0, phase="round", round=1, client=1, step=1, purpose="forward"),
        _entry(5.0, phase="round", round=1, client=1, step=2, purpose="forward"),
        # after training: merge 1, then validation ∥ 2
        _entry(1.0, "aggregation", phase="round", round=1, purpose="aggregation"),
        _entry(2.0, phase="round", round=1, purpose="evaluation"),
        _entry(1.5, phase="round", round=1, purpose="evaluation"),
        _entry(4.0, phase="final", purpose="test"),
    ]
    path = critical_path(log)
    assert path["rounds"][0]["training"] == 10.0
    assert path["rounds"][0]["slowest_client"] == 1
    assert path["rounds"][0]["after_training"] == 3.0
    assert path["lower_bound_seconds"] == 2.0 + 13.0 + 4.0
    assert path["untagged_calls"] == 0


def test_rewrites_run_side_by_side_and_each_retry_follows_its_attempt():
    round_1 = dict(phase="round", round=1, client=0, step=1, purpose="update")
    log = [
        _entry(1.0, "update", rewrite=0, **round_1),
        _entry(1.0, "update", rewrite=0, **round_1),  # rewrite 0 retried: 2
        _entry(1.5, "update", rewrite=1, **round_1),
        _entry(1.5, "update", rewrite=2, **round_1),
    ]
    assert critical_path(log)["rounds"][0]["training"] == 2.0


@pytest.mark.parametrize("shape", ["standard", "heterogeneous"])
def test_quick_orchestration_benchmark_runs_and_writes_json(tmp_path, shape):
    out = tmp_path / "orchestration.json"
    command = [sys.executable, str(BENCH / "orchestration.py"), "--quick", "--shape", shape]
    subprocess.run([*command, "--out", str(out)], check=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["shape"] == shape
    assert len(report["experiment"]["tasks"]) == (3 if shape == "heterogeneous" else 1)
    parallel, sequential = report["runs"]["parallel"], report["runs"]["sequential"]
    for run in (parallel, sequential):
        assert run["critical_path"]["untagged_calls"] == 0
        assert run["critical_path_seconds"] > 0
        assert run["ratio"] >= 1.0  # no run beats its own critical path
        assert run["calls"] > 0
    assert report["same_call_graph"]  # replies are a function of the request
    assert sequential["peak_concurrent_requests"] == 1
    assert parallel["peak_concurrent_requests"] > 1
    assert report["speedup_vs_sequential"] > 0


def test_the_adaptive_limit_benchmark_runs_and_writes_json(tmp_path):
    out = tmp_path / "adaptive.json"
    args = ["--requests", "12", "--capacity", "4", "--fixed", "0.05", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCH / "adaptive_limit.py"), *args],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(out.read_text())["runs"]
    assert runs["pinned"]["final_limit"] == 64 and runs["adaptive"]["final_limit"] < 64
    assert runs["adaptive"]["refused_429"] > 0  # the endpoint did refuse: the limit learned it
