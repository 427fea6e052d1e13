"""Bad input everywhere a user touches it (configs, overrides, task files, engine specs, CLI
arguments) ends in one line naming the problem, a non-zero exit, and no traceback."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedtextgrad import FedTextGradError, load_config
from fedtextgrad.cli import main
from fedtextgrad.config import ExperimentConfig
from fedtextgrad.federated import prepare_data
from fedtextgrad.tasks import load_task

CLI = str(Path(sys.executable).with_name("fedtextgrad"))
# If a case were wrongly accepted it must fail fast, not load a model: port 9 refuses at once.
SAFE = """seed = 0
[engines]
forward = "openai:never-reached"
[llm]
base_url = "http://127.0.0.1:9/v1"
max_retries = 0
cache = false
[task]
name = "bbh_object_counting"
train_size = 6
[eval]
val_size = 2
test_size = 2
"""


HUGE = "9" * 5000  # Python reads no integer of 4300+ digits


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    paths = {
        "ok": ("ok.toml", SAFE),
        "empty": ("empty.toml", ""),
        "bad_toml": ("bad.toml", "[train\nbatch_size = 3"),
        "unknown_key": ("unknown.toml", SAFE + "[train]\nlocal_step = 3\n"),
        "broken_json": ("broken.json", '{"examples": [{"input": "a", "target": "1"}'),
        "no_columns": ("nocols.csv", "question;answer\nx;1\n"),
        "not_rows": ("rows.json", '{"examples": [1, 2, 3]}'),
        "corrupt_run": ("run/results.json", "{half a checkpoint"),
        "shapeless_run": ("shapeless/results.json", '{"status": "running", "rounds": 3}'),
        "a_file": ("plain-file", "not a directory"),
        "huge_toml": ("huge.toml", SAFE.replace("seed = 0", f"seed = {HUGE}")),
        "huge_task": ("huge.jsonl", f'{{"input": "How many?", "target": {HUGE}}}\n'),
        "deep_task": ("deep.json", "[" * 100_000 + "]" * 100_000),
        "corrupt_cache": ("cache/cache.db", "not a database " * 1000),
    }
    made = {}
    for name, (relative, text) in paths.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        made[name] = path
    made["binary"] = tmp_path / "binary.toml"
    made["binary"].write_bytes(b"\xff\xfe\x00\x01 not text")
    made["binary_task"] = tmp_path / "binary.json"
    made["binary_task"].write_bytes(b"\xff\xfe\x00\x01 not text")
    made["run"] = tmp_path / "run"
    made["shapeless"] = tmp_path / "shapeless"
    made["corrupt_cache"] = tmp_path / "cache"
    return made


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, list[str]]:
    """`fedtextgrad ARGS` through the real entry point, in-process."""
    monkeypatch.setattr(sys, "argv", ["fedtextgrad", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    return exited.value.code, [line for line in err.splitlines() if line.strip()]


def with_set(files, *overrides: str) -> list[str]:
    return ["run", str(files["ok"]), "--out", str(files["run"].parent / "out")] + [
        part for o in overrides for part in ("--set", o)
    ]


CASES = {
    # config files
    "missing config": (lambda f: ["run", "nope.toml"], "config file not found: nope.toml"),
    "directory as config": (lambda f: ["run", str(f["run"])], "config file not found"),
    "binary config": (lambda f: ["run", str(f["binary"])], "is not a UTF-8 text file"),
    "bad toml": (lambda f: ["run", str(f["bad_toml"])], "is not valid TOML"),
    "unknown key": (lambda f: ["run", str(f["unknown_key"])], "unknown key 'train.local_step'"),
    "no task": (lambda f: ["run", str(f["empty"])], "missing key 'task'"),
    "markup in a path": (lambda f: ["run", "cfg[/x].toml"], "config file not found: cfg[/x].toml"),
    # impossible or wrongly typed values
    "zero clients": (
        lambda f: with_set(f, "federation.clients=0"),
        "federation.clients: Input should be greater than or equal to 1",
    ),
    "wrong type": (
        lambda f: with_set(f, "federation.clients='three'"),
        "federation.clients: Input should be a valid integer",
    ),
    "more attackers than clients": (
        lambda f: with_set(f, "federation.clients=2", "federation.attackers=3"),
        "federation.attackers (3) exceeds federation.clients (2)",
    ),
    "unknown attack": (lambda f: with_set(f, "federation.attack=poison"), "federation.attack:"),
    "margin above 1": (
        lambda f: with_set(f, "defense.validation_margin=2"),
        "defense.validation_margin: Input should be less than or equal to 1",
    ),
    "min clients": (
        lambda f: with_set(f, "federation.min_clients=4"),
        "federation.min_clients (4) exceeds federation.clients (1)",
    ),
    "negative timeout": (lambda f: with_set(f, "llm.timeout=-1"), "llm.timeout: Input should be"),
    "negative seed": (
        lambda f: with_set(f, "seed=-1"),
        "seed: Input should be greater than or equal to 0",
    ),
    "infinite value": (
        lambda f: with_set(f, "llm.timeout=inf"),
        "llm.timeout: Input should be a finite number",
    ),
    "nan": (lambda f: with_set(f, "federation.alpha=nan"), "alpha: Input should be a finite"),
    "port out of range": (
        lambda f: with_set(f, "llm.base_url='http://127.0.0.1:70000/v1'"),
        "llm.base_url: the URL's port is not a number in 0-65535",
    ),
    "huge integer override": (
        lambda f: with_set(f, f"seed={HUGE}"),
        "invalid override 'seed': its value nests too deeply or is too large",
    ),
    "deeply nested override": (
        lambda f: with_set(f, "train.update_rules=" + "[" * 100_000 + "]" * 100_000),
        "invalid override 'train.update_rules'",
    ),
    "huge integer in a config": (
        lambda f: ["run", str(f["huge_toml"])],
        "holds a number too large to be a config",
    ),
    "override without =": (lambda f: with_set(f, "train.batch_size"), "invalid override"),
    "override into a value": (lambda f: with_set(f, "seed.x=1"), "'seed' is not a section"),
    "too many clients": (
        lambda f: with_set(f, "federation.clients=7"),
        "6 examples cannot be split over 7 clients",
    ),
    # task files
    "unknown task": (lambda f: with_set(f, "task.name=bbh_nothing"), "unknown task 'bbh_nothing'"),
    "missing task file": (lambda f: with_set(f, "task.name=nope.json"), "task file 'nope.json'"),
    "broken task json": (
        lambda f: with_set(f, f"task.name='{f['broken_json']}'"),
        "is not valid JSON",
    ),
    "binary task file": (
        lambda f: with_set(f, f"task.name='{f['binary_task']}'"),
        "is not UTF-8 text",
    ),
    "csv without columns": (
        lambda f: with_set(f, f"task.name='{f['no_columns']}'"),
        "lacks input/target columns",
    ),
    "rows that are not objects": (
        lambda f: with_set(f, f"task.name='{f['not_rows']}'"),
        "row 1 is not an object",
    ),
    "huge integer in a task file": (
        lambda f: with_set(f, f"task.name='{f['huge_task']}'"),
        "holds a number too large to read",
    ),
    "deeply nested task file": (
        lambda f: with_set(f, f"task.name='{f['deep_task']}'"),
        "nests too deeply to hold examples",
    ),
    "missing data dir": (
        lambda f: with_set(f, "task.data_dir=/no/such/dir"),
        "data directory '/no/such/dir'",
    ),
    # engine specs
    "unknown engine kind": (
        lambda f: with_set(f, "engines.forward=foo:bar"),
        "unknown engine kind 'foo'",
    ),
    "engine without a name": (
        lambda f: with_set(f, "engines.forward=local"),
        "invalid engine spec",
    ),
    "unknown local model": (
        lambda f: with_set(f, "engines.forward=local:nonexistent"),
        "unknown local model 'nonexistent'",
    ),
    # run directories
    "corrupt checkpoint": (
        lambda f: ["run", str(f["ok"]), "--out", str(f["run"]), "--resume"],
        "results.json is not valid JSON",
    ),
    "results of the wrong shape": (
        lambda f: ["run", str(f["ok"]), "--out", str(f["shapeless"]), "--resume"],
        "results.json is not a run's results ('config': field required)",
    ),
    "corrupt response cache": (
        lambda f: with_set(f, "llm.cache=true", f"llm.cache_dir='{f['corrupt_cache']}'"),
        "the response cache in",
    ),
    "response cache in a file": (
        lambda f: with_set(f, "llm.cache=true", f"llm.cache_dir='{f['a_file']}'"),
        "the response cache in",
    ),
    "--out is a file": (
        lambda f: ["run", str(f["ok"]), "--out", str(f["a_file"])],
        "plain-file",
    ),
    # other commands
    "binary prompt file": (lambda f: ["uid", str(f["binary"])], "is not UTF-8 text"),
    # CLI arguments
    "missing argument": (lambda f: ["run"], "Missing argument 'CONFIG'"),
    "unknown option": (lambda f: ["run", str(f["ok"]), "--bogus"], "No such option '--bogus'"),
    "unknown command": (lambda f: ["frobnicate"], "No such command 'frobnicate'"),
    "bad option value": (
        lambda f: ["ask", "--max-tokens", "many", "hi"],
        "Invalid value for '--max-tokens'",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line(monkeypatch, capsys, files, case):
    make_args, expected = CASES[case]
    code, lines = run_cli(monkeypatch, capsys, *make_args(files))
    assert code != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


def test_the_installed_command_exits_non_zero_without_a_traceback(files):
    for args in (["run", str(files["binary"])], ["run", str(files["ok"]), "--bogus"]):
        done = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode in (1, 2)
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- property-based: random mutations never produce a traceback --------------------------------

BASE = {
    "seed": 0,
    "engines": {"forward": "openai:m"},
    "task": {"name": "bbh_object_counting", "train_size": 6},
    "train": {"batch_size": 2, "local_steps": 1},
    "federation": {"clients": 2, "rounds": 1},
    "eval": {"val_size": 2, "test_size": 2},
    "defense": {"enabled": True},
    "llm": {"cache": False},
}


def known_keys() -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    for name, field in ExperimentConfig.model_fields.items():
        keys.append((name,))
        sub = getattr(field.annotation, "model_fields", None)
        keys += [(name, key) for key in sub or ()]
    return keys


PATHS = st.one_of(
    st.sampled_from(known_keys()),
    st.lists(st.text(max_size=8), min_size=1, max_size=3).map(tuple),
)
VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=30),
        st.sampled_from(["bbh_word_sorting", "gsm8k", "x.json", "local:x", "openai:", "iid"]),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
MUTATIONS = st.lists(st.tuples(st.sampled_from(["set", "delete"]), PATHS, VALUES), max_size=4)


def mutate(data: dict, mutations) -> dict:
    data = copy.deepcopy(data)
    for action, path, value in mutations:
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if action == "set":
            node[path[-1]] = value
        else:
            node.pop(path[-1], None)
    return data


def accepted_or_one_line(build) -> ExperimentConfig | None:
    try:
        return build()
    except FedTextGradError as error:
        assert str(error) and "\n" not in str(error)
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MUTATIONS)
def test_random_config_mutations_give_a_config_or_one_line(mutations):
    config = accepted_or_one_line(lambda: load_config(mutate(BASE, mutations)))
    if config is not None:  # valid configs must also survive data preparation
        accepted_or_one_line(lambda: prepare_data(config))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=40), max_size=4))
def test_random_overrides_give_a_config_or_one_line(overrides):
    accepted_or_one_line(lambda: load_config(copy.deepcopy(BASE), overrides))


VALID_TOML = SAFE + "[federation]\nclients = 2\nattackers = 1\n[defense]\nenabled = true\n"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID_TOML)), st.integers(0, 12), st.text(max_size=12)),
        min_size=1,
        max_size=4,
    )
)
def test_random_toml_edits_give_a_config_or_one_line(tmp_path, edits):
    text = VALID_TOML
    for at, cut, insert in edits:  # delete `cut` characters at `at`, insert `insert` there
        text = text[:at] + insert + text[at + cut :]
    path = tmp_path / "mutated.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    accepted_or_one_line(lambda: load_config(path))


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ROWS = st.lists(
    st.dictionaries(
        st.sampled_from(["input", "target", "question", "answer", "key", "other"]),
        JSON,
        max_size=4,
    ),
    max_size=8,
)
SIZES = st.tuples(*(st.one_of(st.none(), st.integers(-2, 12)) for _ in range(3)))


def load_or_one_line(path: Path, sizes) -> None:
    try:
        task = load_task(path, train_size=sizes[0], val_size=sizes[1], test_size=sizes[2])
    except FedTextGradError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert task.train and task.val and task.test


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.one_of(JSON, ROWS, ROWS.map(lambda rows: {"examples": rows})), SIZES)
def test_random_json_task_files_give_a_task_or_one_line(tmp_path, content, sizes):
    path = tmp_path / "task.json"
    path.write_text(json.dumps(content))
    load_or_one_line(path, sizes)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(st.text(max_size=300), st.binary(max_size=100).map(bytes.hex)), st.booleans(), SIZES
)
def test_random_jsonl_and_csv_task_files_give_a_task_or_one_line(tmp_path, text, csv, sizes):
    header = "input,target\n" if csv else ""
    path = tmp_path / ("task.csv" if csv else "task.jsonl")
    path.write_text(header + text, encoding="utf-8", errors="surrogatepass")
    load_or_one_line(path, sizes)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200), st.sampled_from([".json", ".jsonl", ".csv"]))
def test_random_bytes_as_task_files_give_a_task_or_one_line(tmp_path, data, suffix):
    path = tmp_path / f"task{suffix}"
    path.write_bytes(data)
    load_or_one_line(path, (None, None, None))


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("unknown key", 2),  # ConfigError
        ("missing task file", 3),  # DataError
        ("results of the wrong shape", 5),  # RunStateError
    ],
)
def test_the_exit_status_names_the_kind_of_error(monkeypatch, capsys, files, case, status):
    make_args, _ = CASES[case]
    assert run_cli(monkeypatch, capsys, *make_args(files))[0] == status
