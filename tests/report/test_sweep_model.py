"""A real 2 × 2 sweep on the embedded 0.5B model, tiny sizes: runs, report, and a free re-run."""

from __future__ import annotations

import json

import pytest
from helpers.models import SMALL_MODEL
from typer.testing import CliRunner

from fedtextgrad.cli import app

BASE = f"""\
seed = 0
[engines]
forward = "{SMALL_MODEL}"
[task]
name = "bbh_object_counting"
train_size = 2
[train]
batch_size = 1
local_steps = 1
forward_max_tokens = 128
feedback_max_tokens = 96
update_max_tokens = 160
[federation]
clients = 2
rounds = 1
[eval]
val_size = 2
test_size = 2
uid_metrics = true
"""
SWEEP = """\
base = "base.toml"
question = "Concatenation or UID summarization, on the real model?"
seeds = [0, 1]
concurrency = 2
[grid]
"federation.aggregation" = ["concat", "uid_summarize"]
"""


@pytest.mark.model
@pytest.mark.slow
def test_a_real_sweep_reports_and_a_rerun_skips_every_complete_run(tmp_path, llm_settings):
    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "sweep.toml").write_text(SWEEP)
    out = tmp_path / "out"
    args = ["sweep", str(tmp_path / "sweep.toml"), "--out", str(out)]
    args += ["--set", f'llm.cache_dir="{llm_settings.cache_dir}"']
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "4 runs: 4 ran, 0 skipped" in result.output

    runs = sorted(p for p in out.iterdir() if p.is_dir() and p.name != "report")
    assert [p.name for p in runs] == [
        "aggregation=concat__seed=0",
        "aggregation=concat__seed=1",
        "aggregation=uid_summarize__seed=0",
        "aggregation=uid_summarize__seed=1",
    ]
    stamps = {}
    for run in runs:
        results = json.loads((run / "results.json").read_text())
        assert results["status"] == "complete"
        uid = results["rounds"][0]["uid"]  # the global prompt's surprisal profile
        assert uid["length_tokens"] == results["rounds"][0]["prompt_tokens"]
        assert len(uid["surprisals"]) == uid["length_tokens"] - 1 and uid["mean"] > 0
        assert (run / "report.md").is_file() and (run / "accuracy.png").is_file()
        stamps[run.name] = (run / "results.json").stat().st_mtime_ns

    report = out / "report"
    table = (report / "report.md").read_text()
    assert "| aggregation | seeds |" in table and "| concat | 2 |" in table
    assert "| uid_summarize | 2 |" in table and "surprisal var" in table
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert "sweep_accuracy_rounds.png" in pngs and "sweep_surprisal.png" in pngs
    assert (report / "index.html").read_text().count("data:image/png;base64,") == len(pngs)

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "4 runs: 0 ran, 4 skipped (already complete)" in again.output
    for run in runs:  # untouched: no run was even resumed
        assert (run / "results.json").stat().st_mtime_ns == stamps[run.name]
