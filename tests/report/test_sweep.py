"""Sweep files: validation, expansion into runs, concurrent runs, skipping and resuming."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from helpers.sweeps import BASE, ToyPool, make_sweep_file

from fedtextgrad.errors import FedTextGradError
from fedtextgrad.sweep import command, load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "base.toml").write_text('[task]\nname = "bbh_object_counting"\n')
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_grid_seeds_and_variants_expand_into_named_runs(tmp_path):
    path = write(
        tmp_path,
        'base = "base.toml"\nseeds = [3, 4]\n[set]\nfederation.rounds = 2\n'
        "[grid]\ntrain.local_steps = [1, 5]\n"
        "[variants.centralized]\nfederation.clients = 1\n"
        "[variants.federated]\nfederation.clients = 3\n",
    )
    sweep = load_sweep(path)
    assert sweep.name == "s" and len(sweep.runs) == 8
    first = sweep.runs[0]
    assert first.name == "centralized__local_steps=1__seed=3"
    assert first.label == {"variant": "centralized", "train.local_steps": 1}
    assert first.config.federation.rounds == 2 and first.config.seed == 3
    assert first.config.federation.clients == 1 and first.config.train.local_steps == 1
    assert sweep.runs[-1].name == "federated__local_steps=5__seed=4"
    assert len({r.name for r in sweep.runs}) == 8


def test_only_keeps_the_runs_whose_name_matches(tmp_path):
    path = write(
        tmp_path, 'base = "base.toml"\nseeds = [0, 1]\n[grid]\ntrain.batch_size = [1, 2]\n'
    )
    sweep = load_sweep(path, only=["batch_size=2__*", "*=1__seed=0"])
    assert [r.name for r in sweep.chosen] == [
        "batch_size=1__seed=0",
        "batch_size=2__seed=0",
        "batch_size=2__seed=1",
    ]
    assert len(sweep.manifest(tmp_path)["runs"]) == 4
    with pytest.raises(FedTextGradError, match="matches no run"):
        load_sweep(path, only=["paper__*"])


def test_command_line_overrides_reach_every_run(tmp_path):
    path = write(tmp_path, 'base = "base.toml"\n[grid]\n"train.batch_size" = [1, 2]\n')
    sweep = load_sweep(path, ["eval.test_size=4"])
    assert [r.config.eval.test_size for r in sweep.runs] == [4, 4]
    assert [r.name for r in sweep.runs] == ["batch_size=1__seed=0", "batch_size=2__seed=0"]


def test_values_that_slug_alike_get_their_own_runs(tmp_path):
    path = write(
        tmp_path,
        'base = "base.toml"\n[grid]\n"train.update_rules" = [["Be brief."], ["Be, brief."]]\n',
    )
    names = [run.name for run in load_sweep(path).runs]
    assert len(set(names)) == 2 and all(
        name.startswith("update_rules=Be-brief.__seed=0__") for name in names
    )


def test_run_names_stay_distinct_and_usable_as_directories(tmp_path):
    long = "Count every item in the list twice before you answer. " * 8
    rules = ["Be brief.", "Be, brief.", "Keep it short.", "keep it short.", long + "A", long + "B"]
    grid = json.dumps([[rule] for rule in rules])
    path = write(tmp_path, f'base = "base.toml"\n[grid]\n"train.update_rules" = {grid}\n')
    names = [run.name for run in load_sweep(path).runs]
    assert len({name.lower() for name in names}) == len(rules)  # even where case is ignored
    for name in names:
        (tmp_path / "out" / name).mkdir(parents=True)  # not too long for the filesystem


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('base = "base.toml"\ncolour = 1\n', "unknown key 'colour'"),
        ('base = "base.toml"\n[grid]\n"train.local_steps" = []\n', "non-empty list"),
        ('base = "base.toml"\n[grid]\n"train.local_steps" = 3\n', "non-empty list"),
        ('base = "base.toml"\n[grid]\nseed = [1, 2]\n', "seeds = [...]"),
        ('base = "base.toml"\nseeds = [1, 1]\n', "seeds repeat"),
        ('base = "nowhere.toml"\n', "base config not found"),
        ("seeds = [1]\n", "missing key 'base'"),
        ('base = "base.toml"\n[grid]\n"train.local_steps" = [1, 0]\n', "local_steps=0"),
        ('base = "base.toml"\n[grid]\n"train.colour" = [1]\n', "unknown key 'train.colour'"),
        ('base = "base.toml"\n[grid\n', "not valid TOML"),
        ('base = "base.toml"\n[grid]\n"train.local_steps" = [1, 1]\n', "repeats a value"),
        ('base = "s.toml"\n', "missing key 'task'"),
        ('base = "binary.bin"\n', "not a UTF-8 text file"),
        ('base = "base.json"\n', "base.json is not valid TOML"),
        ('base = "base.toml"\nseeds = [-1]\n', "seed: Input should be greater than or equal to 0"),
    ],
)
def test_bad_sweep_files_fail_with_one_line(tmp_path, text, message):
    (tmp_path / "binary.bin").write_bytes(b"\xff\xfe\x00 not text")
    (tmp_path / "base.json").write_text('{"task": {"name": "bbh_object_counting"}}')
    with pytest.raises(FedTextGradError) as caught:
        load_sweep(write(tmp_path, text))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_shipped_sweep_files_are_valid():
    sweeps = ROOT / "configs" / "sweeps"
    files = [p for d in ("", "tiny/", "measured/") for p in sorted(sweeps.glob(f"{d}*.toml"))]
    assert len(files) >= 13
    for path in files:
        sweep = load_sweep(path)
        assert sweep.spec.question and len(sweep.runs) >= 2 * len(sweep.spec.seeds)


def test_a_sweep_runs_every_point_and_a_rerun_skips_complete_runs(tmp_path):
    sweep_file = make_sweep_file(tmp_path)
    out = tmp_path / "out"
    pool = ToyPool()
    events = []
    outcome = asyncio.run(
        run_sweep(load_sweep(sweep_file), out, pool=pool, on_event=lambda n, e: events.append(n))
    )
    names = [
        "aggregation=concat__seed=0",
        "aggregation=concat__seed=1",
        "aggregation=uid_summarize__seed=0",
        "aggregation=uid_summarize__seed=1",
    ]
    assert sorted(outcome.completed) == names and not outcome.skipped and not outcome.failed
    assert set(events) == set(names)
    for name in names:
        results = json.loads((out / name / "results.json").read_text())
        assert results["status"] == "complete"
        assert (out / name / "report.md").is_file() and (out / name / "accuracy.png").is_file()
    manifest = json.loads((out / "sweep.json").read_text())
    assert [r["dir"] for r in manifest["runs"]] == names
    assert manifest["keys"] == ["federation.aggregation"]
    calls = pool.calls
    assert calls > 0
    again = asyncio.run(run_sweep(load_sweep(sweep_file), out, pool=pool))
    assert sorted(again.skipped) == names and not again.completed
    assert pool.calls == calls  # nothing was asked of the engines


def test_an_interrupted_run_resumes_and_a_failing_run_does_not_stop_the_others(
    tmp_path,
):
    sweep_file = make_sweep_file(tmp_path)
    out = tmp_path / "out"
    outcome = asyncio.run(
        run_sweep(load_sweep(sweep_file), out, pool=ToyPool(fail_for="uid_summarize"))
    )
    assert sorted(outcome.completed) == ["aggregation=concat__seed=0", "aggregation=concat__seed=1"]
    assert set(outcome.failed) == {
        "aggregation=uid_summarize__seed=0",
        "aggregation=uid_summarize__seed=1",
    }
    # Cut a complete run back to its first round, as if the process had died there.
    path = out / "aggregation=concat__seed=0" / "results.json"
    results = json.loads(path.read_text())
    first_round = results["rounds"][0]
    results.update(status="running", rounds=[first_round])
    del results["final"]
    path.write_text(json.dumps(results))
    outcome = asyncio.run(run_sweep(load_sweep(sweep_file), out, pool=ToyPool()))
    assert outcome.skipped == ["aggregation=concat__seed=1"]
    assert sorted(outcome.completed) == [
        "aggregation=concat__seed=0",
        "aggregation=uid_summarize__seed=0",
        "aggregation=uid_summarize__seed=1",
    ]
    resumed = json.loads(path.read_text())
    assert resumed["status"] == "complete" and resumed["rounds"][0] == first_round
    assert len(resumed["rounds"]) == 2


def test_a_complete_run_of_another_config_is_reported_not_reused(tmp_path):
    sweep_file = make_sweep_file(tmp_path)
    out = tmp_path / "out"
    asyncio.run(run_sweep(load_sweep(sweep_file), out, pool=ToyPool()))
    changed = load_sweep(sweep_file, ["eval.test_size=2"])
    assert {run.status(out) for run in changed.runs} == {"stale"}
    outcome = asyncio.run(run_sweep(changed, out, pool=ToyPool()))
    assert not outcome.completed and not outcome.skipped and len(outcome.failed) == 4
    assert "holds a run of another config or task data" in next(iter(outcome.failed.values()))
    # llm.* is plumbing: another cache directory still reuses the runs
    same = load_sweep(sweep_file, ['llm.cache_dir="/tmp/elsewhere"'])
    assert {run.status(out) for run in same.runs} == {"complete"}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("[1, 2]", "is not a run's results (not a JSON object)"),
        ("[" * 100_000 + "]" * 100_000, "is not a run's results"),
        ('{"status": "complete", "config": 3}', "holds a run of another config"),
    ],
)
def test_a_damaged_run_fails_in_one_line_and_the_others_go_on(tmp_path, damage, message):
    sweep = load_sweep(make_sweep_file(tmp_path), only=["aggregation=concat__*"])
    damaged = tmp_path / "out" / sweep.runs[0].name / "results.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text(damage)
    outcome = asyncio.run(run_sweep(sweep, tmp_path / "out", pool=ToyPool()))
    assert outcome.completed == [sweep.runs[1].name]
    assert message in outcome.failed[sweep.runs[0].name]
    assert "\n" not in outcome.failed[sweep.runs[0].name]


def test_a_sweep_refuses_a_report_directory_that_is_not_a_reports_before_running(tmp_path):
    (tmp_path / "out" / "report").mkdir(parents=True)
    (tmp_path / "out" / "report" / "report.md").write_text("my notes")
    with pytest.raises(FedTextGradError, match="holds report.md but no report"):
        command(make_sweep_file(tmp_path), out=tmp_path / "out", dry_run=True)
    assert (tmp_path / "out" / "report" / "report.md").read_text() == "my notes"


def test_a_complete_run_whose_task_file_changed_is_not_reused(tmp_path):
    task = tmp_path / "doubles.jsonl"
    lines = [json.dumps({"input": f"What is {i} + {i}?", "target": str(2 * i)}) for i in range(40)]
    task.write_text("\n".join(lines))
    (tmp_path / "base.toml").write_text(BASE.replace('"bbh_object_counting"', f"'{task}'"))
    (tmp_path / "s.toml").write_text('base = "base.toml"\n')
    asyncio.run(run_sweep(load_sweep(tmp_path / "s.toml"), tmp_path / "out", pool=ToyPool()))
    assert [run.status(tmp_path / "out") for run in load_sweep(tmp_path / "s.toml").runs] == [
        "complete"
    ]
    task.write_text("\n".join(lines).replace(" + ", " plus "))  # every example edited
    (run,) = load_sweep(tmp_path / "s.toml").runs
    assert run.status(tmp_path / "out") == "stale"


def test_runs_stopped_at_the_token_budget_are_told_apart(tmp_path):
    sweep = load_sweep(make_sweep_file(tmp_path), ["llm.budget_tokens=1"])
    outcome = asyncio.run(run_sweep(sweep, tmp_path / "out", pool=ToyPool()))
    assert sorted(outcome.budget) == sorted(r.name for r in sweep.runs)
    assert outcome.completed == [] and outcome.failed == {}
