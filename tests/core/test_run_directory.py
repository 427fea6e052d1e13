"""A run directory belongs to one run: a second one is refused, a directory of other files is
not taken over, and a resumed run checks that its data is the data it started with."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.federation import config, run, toy_engines

from fedtextgrad import FedTextGradError
from fedtextgrad.federated import RunStore

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_run_on_a_directory_in_use_is_refused(tmp_path):
    cfg = config(federation={"rounds": 1})
    (tmp_path / "run").mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run" / "run.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FedTextGradError, match=rf"in use by another run \(pid {holder.pid}\)"):
            run(cfg, tmp_path / "run")
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "run" / "results.json").exists()  # nothing was written
    assert run(cfg, tmp_path / "run").data["status"] == "complete"  # free once the holder is gone


def test_the_same_process_cannot_hold_a_directory_twice(tmp_path):
    with RunStore(tmp_path).owned(), pytest.raises(FedTextGradError, match="in use"):
        run(config(federation={"rounds": 1}), tmp_path)


def test_files_that_are_not_a_runs_are_never_overwritten(tmp_path):
    (tmp_path / "report.md").write_text("mine")
    (tmp_path / "prompts").mkdir()
    with pytest.raises(FedTextGradError, match=r"holds prompts, report.md but no run"):
        run(config(federation={"rounds": 1}), tmp_path)
    assert (tmp_path / "report.md").read_text() == "mine"
    assert not (tmp_path / "results.json").exists()
    (tmp_path / "report.md").unlink()
    (tmp_path / "prompts").rmdir()
    (tmp_path / "notes.txt").write_text("mine")  # other files are no clash: they are left alone
    assert run(config(federation={"rounds": 1}), tmp_path).data["status"] == "complete"
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resume_after_the_task_file_changed_is_refused(tmp_path):
    task = tmp_path / "doubles.jsonl"
    lines = [json.dumps({"input": f"What is {i} + {i}?", "target": str(2 * i)}) for i in range(60)]
    task.write_text("\n".join(lines))
    cfg = config(task={"name": str(task)}, federation={"rounds": 2}, train={"induce": False})
    with pytest.raises(FedTextGradError):  # the power fails in round 2
        run(cfg, tmp_path / "run", engines=toy_engines(cfg, fail_after=40))
    assert json.loads((tmp_path / "run" / "results.json").read_text())["data_fingerprint"]
    task.write_text("\n".join(lines).replace("What is 5 + 5?", "What is 5 plus 5?"))
    with pytest.raises(FedTextGradError, match="the task data changed"):
        run(cfg, tmp_path / "run", resume=True)
    task.write_text("\n".join(lines))  # restored: the run continues
    assert run(cfg, tmp_path / "run", resume=True).data["status"] == "complete"


DAMAGE = {  # a results.json edited by hand, or another program's file
    "not an object": lambda r: json.dumps([r]),
    "no rounds": lambda r: json.dumps({k: v for k, v in r.items() if k != "rounds"}),
    "a round without its prompt": lambda r: json.dumps(r | {"rounds": [{"round": 1}]}),
    "an unknown status": lambda r: json.dumps(r | {"status": "finished"}),
    "complete without final": lambda r: json.dumps(r | {"status": "complete"}),
    "initial without prompt": lambda r: json.dumps(r | {"initial": "Count."}),
    "usage of words": lambda r: json.dumps(r | {"usage": {"by_purpose": {"x": {"calls": "a"}}}}),
    "a huge integer": lambda r: '{"rounds": ' + "9" * 5000 + "}",
    "deep nesting": lambda r: "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_resuming_results_of_the_wrong_shape_is_one_line(tmp_path, damage):
    cfg = config(federation={"rounds": 2})
    with pytest.raises(RuntimeError, match="lost power"):  # a run stopped in its first round
        run(cfg, tmp_path, engines=toy_engines(cfg, fail_after=40))
    path = tmp_path / "results.json"
    path.write_text(DAMAGE[damage](json.loads(path.read_text())))
    with pytest.raises(FedTextGradError, match="results.json is not a run's results") as caught:
        run(cfg, tmp_path, resume=True)
    assert "\n" not in str(caught.value)


def test_a_report_never_overwrites_files_that_are_not_a_reports(tmp_path):
    from fedtextgrad.report import write_report

    run(config(federation={"rounds": 1}), tmp_path / "run")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "index.html").write_text("my page")
    with pytest.raises(FedTextGradError, match=r"holds index.html but no report: give --out"):
        write_report([tmp_path / "run"], tmp_path / "mine")
    assert (tmp_path / "mine" / "index.html").read_text() == "my page"
    report = write_report([tmp_path / "run"], tmp_path / "report")
    assert write_report([tmp_path / "run"], report) == report  # its own report is rewritten
