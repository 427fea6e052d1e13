"""`fedtextgrad tasks list` and `fedtextgrad tasks sample`."""

import json
from pathlib import Path

from typer.testing import CliRunner

from fedtextgrad.tasks.cli import app

runner = CliRunner()


def test_list_without_data() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split("\t")[0] for line in lines[:4]] == [
        "bbh_object_counting",
        "bbh_multistep_arithmetic_two",
        "bbh_word_sorting",
        "gsm8k",
    ]
    assert "generator" in lines[0] and "unavailable" in lines[3]
    assert lines[4] == "ii_antonyms\tpackaged" and len(lines) == 4 + 19


def test_list_with_data(data_dir: Path) -> None:
    result = runner.invoke(app, ["list", "--data-dir", str(data_dir)])
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if not line.startswith("ii_")]
    assert all("file" in line and str(data_dir) in line for line in lines)


def test_sample_prints_json_lines(data_dir: Path) -> None:
    args = ["sample", "bbh_multistep_arithmetic_two", "--n", "4", "--seed", "2"]
    generated = runner.invoke(app, args)
    assert generated.exit_code == 0
    rows = [json.loads(line) for line in generated.output.splitlines()]
    assert len(rows) == 4 and all(set(r) == {"input", "target"} for r in rows)
    assert runner.invoke(app, args).output == generated.output
    real = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    assert real.exit_code == 0 and real.output != generated.output


def test_sample_unknown_task_fails() -> None:
    result = runner.invoke(app, ["sample", "nope"])
    assert result.exit_code != 0
    assert "unknown task 'nope'" in str(result.exception)
