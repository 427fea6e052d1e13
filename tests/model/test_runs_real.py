"""Whole runs on the real embedded 0.5B model, at tiny sizes. CI keeps one of each kind (a
federated run, a paper preset, an instruction-induction task); the rest are `slow`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fedtextgrad import load_config, run
from fedtextgrad.estimate import estimate
from fedtextgrad.federated import prepare_data
from fedtextgrad.llm.local import model_store

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parents[2]


def tiny(tmp_path: Path, *overrides: str):
    return load_config(
        ROOT / "configs" / "tiny.toml", [f"llm.cache_dir='{tmp_path / 'cache'}'", *overrides]
    )


@pytest.mark.slow
def test_centralized_textgrad_run_writes_complete_results(tmp_path):
    cfg = tiny(tmp_path, "federation.clients=1", "train.local_steps=2", "train.gate='validation'")
    results = run(cfg, tmp_path / "run")
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    assert data["status"] == "complete" and len(data["rounds"]) == 1
    assert data["config"]["federation"]["clients"] == 1
    steps = data["rounds"][0]["clients"][0]["steps"]
    assert len(steps) == 2 and all(s["reason"] for s in steps)
    for key in ("val_accuracy", "test_accuracy", "prompt"):
        assert key in data["initial"]
    for key in ("test_accuracy", "prompt", "val_accuracy", "round", "paired", "last"):
        assert key in data["final"]
    assert data["final"]["val_accuracy"] >= data["initial"]["val_accuracy"]  # best on validation
    assert 0 <= results.final_test_accuracy <= 1
    usage = data["usage"]
    assert usage["calls"] > 0 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert {"forward", "evaluation", "test"} <= usage["by_purpose"].keys()


@pytest.mark.parametrize(
    "method",
    [
        "uid_summarize",
        "retain",  # ours: replays uid_summarize's clients from the shared cache
        *(pytest.param(m, marks=pytest.mark.slow) for m in ("concat", "summarize", "select")),
    ],
)
def test_federated_round_with_each_aggregator(tmp_path_factory, method):
    # One response cache for all four: they share the initial evaluation and client training.
    shared = tmp_path_factory.getbasetemp() / "aggregators"
    cfg = tiny(shared, f"federation.aggregation='{method}'")
    results = run(cfg, shared / method)
    entry = results.rounds[0]
    assert entry["aggregation"]["method"] == method
    if method == "uid_summarize":  # --dry-run's estimate of the calls
        estimated, calls = (
            sum(estimate(cfg, prepare_data(cfg)).calls.values()),
            results.usage["calls"],
        )
        # It assumes every answer wrong: a run does at most 25% more, and fewer where answers
        # are right (a batch without errors asks no feedback): one CI run made 36 against 48.2.
        assert 0.5 * estimated <= calls <= 1.25 * estimated, (estimated, calls)
    assert len(entry["clients"]) + len(entry["failures"]) == 2 and entry["clients"]
    assert entry["global_prompt"].strip() and entry["prompt_tokens"] > 0
    if method != "concat":  # merges state the answer format exactly once, at the end
        answer_format = prepare_data(cfg).objective.answer_format
        assert entry["global_prompt"].count(answer_format) == 1
        assert entry["global_prompt"].endswith(answer_format)


# The homogeneous preset runs on a short-answer task in CI; the heterogeneous one keeps its
# three BBH tasks (chain-of-thought answers) and is slow.
@pytest.mark.parametrize(
    "preset", ["homogeneous", pytest.param("heterogeneous", marks=pytest.mark.slow)]
)
def test_the_paper_presets_run_end_to_end(tmp_path_factory, data_dir, preset):
    shared = tmp_path_factory.getbasetemp() / "paper"
    homogeneous = preset == "homogeneous"
    cfg = load_config(
        ROOT / "configs" / "paper" / f"{preset}.toml",
        [
            f"llm.cache_dir='{shared / 'cache'}'",
            f"task.data_dir='{data_dir}'",
            "engines.forward='local:qwen2.5-coder-0.5b'",
            *(["task.name='ii_singular_to_plural'"] if homogeneous else []),
            f"task.train_size={9 if homogeneous else 3}",  # 3 per client
            "train.local_steps=1",
            f"train.forward_max_tokens={32 if homogeneous else 128}",
            "train.feedback_max_tokens=96",
            "train.update_max_tokens=160",
            "federation.rounds=1",
            "eval.val_size=1",
            "eval.test_size=1",
        ],
    )
    results = run(cfg, shared / preset)
    steps = [s for c in results.rounds[0]["clients"] for s in c["steps"]]
    assert results.data["status"] == "complete" and steps
    for step in steps:  # the paper's step: feedback on every example, the batch gate
        assert step["outcome"] in {"accepted", "reverted", "rejected", "unchanged", "no_errors"}
        if step["outcome"] in {"accepted", "reverted"}:
            assert step["reason"].split(":")[1].strip().startswith("batch accuracy")
        if step["outcome"] != "no_errors":
            assert step["feedback"].count("<EXAMPLE>") == cfg.train.batch_size


@pytest.mark.slow
def test_our_step_selects_among_candidates_on_the_real_model(llm_settings):
    from fedtextgrad.config import TrainConfig
    from fedtextgrad.llm import open_engine
    from fedtextgrad.tasks import load_task
    from fedtextgrad.textgrad import LocalTrainer, Objective

    task = load_task("bbh_object_counting", train_size=8, val_size=2)
    config = TrainConfig(
        batch_size=2,
        candidates=2,
        holdout=2,
        forward_max_tokens=128,
        feedback_max_tokens=96,
        update_max_tokens=192,
    )

    async def main():
        llm = open_engine("local:qwen2.5-coder-0.5b", llm_settings)
        try:
            trainer = LocalTrainer(llm, llm, Objective.of(task), task.train, task.val, config, 0)
            return trainer, await trainer.train(task.initial_prompt, steps=1)
        finally:
            await llm.aclose()

    trainer, result = asyncio.run(main())
    step = result.steps[0]
    assert len(trainer.holdout) == 2 and step.tokens > 0 and step.reason
    assert result.prompt.endswith(task.answer_format)
    if step.outcome in {"accepted", "reverted"}:  # candidates were scored on batch + holdout
        assert 1 <= step.candidates <= 2 and "batch+holdout accuracy" in step.reason
        assert step.accepted == (step.outcome == "accepted")


@pytest.mark.slow
def test_readme_python_examples_run_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert len(blocks) >= 2
    shutil.copytree(ROOT / "configs", tmp_path / "configs")  # the examples' relative paths
    env = {
        **os.environ,
        "FEDTEXTGRAD_CACHE": str(tmp_path / "cache"),
        "FEDTEXTGRAD_MODELS": str(model_store()),
    }
    for block in blocks:
        done = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip()
