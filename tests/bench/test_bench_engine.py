"""The engine benchmarks: the throughput script against the real 0.5B model (tiny), and the
local-engine benchmark's accounting of tokens per phase. Correctness only: no timed assertion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from local_engine import evaluation_phases, forward_windows  # noqa: E402


def _call(start: float, end: float, tokens: int, **tag) -> dict:
    return {
        "start": start,
        "end": end,
        "completion_tokens": tokens,
        "prompt_tokens": 10,
        "tag": json.dumps(tag),
    }


def test_evaluation_phases_divide_their_tokens_by_their_wall_time():
    log = [
        _call(0.0, 4.0, 40, phase="initial", purpose="evaluation"),
        _call(1.0, 5.0, 40, phase="initial", purpose="test"),
        _call(6.0, 8.0, 10, phase="round", round=1, client=0, step=1, purpose="forward"),
        _call(9.0, 11.0, 30, phase="round", round=1, purpose="evaluation"),
    ]
    phases = {p["phase"]: p for p in evaluation_phases(log)}
    assert set(phases) == {"initial", "round1/validation"}  # training calls are not evaluation
    assert phases["initial"]["tokens_per_second"] == pytest.approx(80 / 5)
    assert phases["round1/validation"]["tokens_per_second"] == pytest.approx(15.0)


def test_forward_windows_exclude_time_shared_with_feedback():
    log = [
        _call(0.0, 10.0, 100, phase="round", round=1, client=0, step=1, purpose="forward"),
        _call(5.0, 10.0, 50, phase="round", round=1, client=1, step=1, purpose="feedback"),
    ]
    window = forward_windows(log)
    assert window["seconds"] == pytest.approx(5.0)  # only [0, 5]: nothing else in flight
    assert window["tokens_per_second"] == pytest.approx(10.0)  # half of the forward call's 100


@pytest.mark.model
@pytest.mark.slow
def test_engine_throughput_runs_on_the_real_model(tmp_path):
    out = tmp_path / "throughput.json"
    subprocess.run(
        [
            sys.executable,
            str(BENCH / "engine_throughput.py"),
            "--model",
            "qwen2.5-coder-0.5b",
            "--levels",
            "1,2",
            "--max-tokens",
            "8",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        check=True,
        timeout=600,
    )
    report = json.loads(out.read_text())
    assert [level["concurrent_requests"] for level in report["levels"]] == [1, 2]
    for level in report["levels"]:
        # essays never end within 8 tokens: every reply is cut at exactly max_tokens
        assert level["completion_tokens"] == 8 * level["concurrent_requests"]
        assert level["replies_at_max_tokens"] == level["concurrent_requests"]
        assert level["tokens_per_second"] > 0
    assert report["best_tokens_per_second"] == max(
        level["tokens_per_second"] for level in report["levels"]
    )
