"""Loading the real files, the generator fallback, custom files and the split rules."""

import csv
import json
import pickle
import random
from pathlib import Path

import pytest

from fedtextgrad.tasks import Example, Task, list_tasks, load_task, sample_examples

TEXTGRAD_PROMPT = (
    "You will answer a reasoning question. Think step by step. The last line of your response "
    "should be of the following format: 'Answer: $VALUE' where VALUE is a numerical value."
)
BBH = ("bbh_object_counting", "bbh_multistep_arithmetic_two", "bbh_word_sorting")


def all_examples(task: Task) -> tuple[Example, ...]:
    return task.train + task.val + task.test


def test_list_tasks() -> None:
    assert list_tasks()[:5] == [*BBH, "gsm8k", "gsm8k_paper"]
    assert len(list_tasks()) == 5 + 19 and list_tasks()[5] == "ii_antonyms"


@pytest.mark.parametrize("name", BBH)
def test_bbh_real_files(data_dir: Path, name: str) -> None:
    task = load_task(name, data_dir=data_dir)
    raw = json.loads((data_dir / "bbh" / f"{name.removeprefix('bbh_')}.json").read_text())
    assert [(ex.input, ex.target) for ex in all_examples(task)] == [
        (ex["input"], ex["target"]) for ex in raw["examples"]
    ]
    assert (len(task.train), len(task.val), len(task.test)) == (50, 100, 100)
    assert task.source.endswith(".json")
    assert all(ex.task == name and ex.key for ex in all_examples(task))


def test_gsm8k_real_files(data_dir: Path) -> None:
    task = load_task("gsm8k", data_dir=data_dir)
    assert (len(task.train), len(task.val), len(task.test)) == (200, 300, 1319)
    # DSPy's split: each file shuffled by a fresh random.Random(0).
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "train.jsonl").open()]
    random.Random(0).shuffle(rows)
    assert [ex.input for ex in task.train + task.val] == [r["question"] for r in rows[:500]]
    assert rows[0]["answer"].endswith("#### " + task.train[0].target)
    assert all(ex.target.lstrip("-").isdigit() for ex in all_examples(task))  # "1,080" -> "1080"
    assert {ex.key for ex in all_examples(task)} == {""}


def shuffled_rows(data_dir: Path, split: str) -> list[dict]:
    """A GSM8K file's rows in DSPy's order: shuffled by a fresh random.Random(0)."""
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / f"{split}.jsonl").open()]
    random.Random(0).shuffle(rows)
    return rows


def test_gsm8k_paper_split(data_dir: Path) -> None:
    # The paper's code (ubc-tea/FedTextGrad): train[:50], val train[200:300], test test[300:400].
    task = load_task("gsm8k_paper", data_dir=data_dir)
    assert (len(task.train), len(task.val), len(task.test)) == (50, 100, 100)
    train, test = shuffled_rows(data_dir, "train"), shuffled_rows(data_dir, "test")
    assert [ex.input for ex in task.train] == [r["question"] for r in train[:50]]
    assert [ex.input for ex in task.val] == [r["question"] for r in train[200:300]]
    assert [ex.input for ex in task.test] == [r["question"] for r in test[300:400]]
    assert task.name == "gsm8k_paper" and {ex.task for ex in all_examples(task)} == {task.name}
    assert task.initial_prompt == load_task("gsm8k", data_dir=data_dir).initial_prompt


def test_gsm8k_paper_samples_and_sizes(data_dir: Path) -> None:
    assert len(sample_examples("gsm8k_paper", 3, seed=0, data_dir=data_dir)) == 3
    task = load_task("gsm8k_paper", data_dir=data_dir, train_size=10, test_size=5)
    assert (len(task.train), len(task.val), len(task.test)) == (10, 100, 5)


@pytest.mark.parametrize("name", [*BBH, "gsm8k", "gsm8k_paper"])
def test_real_targets_score_against_themselves(data_dir: Path, name: str) -> None:
    task = load_task(name, data_dir=data_dir)
    for ex in all_examples(task):
        assert task.score(f"Answer: {ex.target}", ex.target) == 1.0, ex
        assert task.extract(f"Some reasoning.\nAnswer: {ex.target}") is not None


def test_prompts() -> None:
    for name in ("bbh_object_counting", "bbh_multistep_arithmetic_two"):
        assert load_task(name).initial_prompt == TEXTGRAD_PROMPT
    sorting = load_task("bbh_word_sorting")
    assert "sorted words separated by single spaces" in sorting.answer_format
    for task in (load_task(name) for name in BBH):
        assert task.answer_format.startswith("The last line of your response")
        assert task.initial_prompt.endswith(task.answer_format)
        assert task.role


def test_env_var_and_argument(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_task("bbh_object_counting").source.startswith("generator")
    monkeypatch.setenv("FEDTEXTGRAD_DATA", str(data_dir))
    assert load_task("bbh_object_counting").source.endswith("object_counting.json")
    assert load_task("gsm8k", test_size=5).test


def test_generator_fallback_when_file_missing(tmp_path: Path) -> None:
    task = load_task("bbh_word_sorting", data_dir=tmp_path, data_seed=5)
    assert (len(task.train), len(task.val), len(task.test)) == (50, 100, 100)
    assert task.source == "generator (data_seed=5)"
    assert task == load_task("bbh_word_sorting", data_seed=5)
    assert not {ex.input for ex in task.train} & {ex.input for ex in task.test}


def test_truncation(data_dir: Path) -> None:
    full = load_task("bbh_object_counting", data_dir=data_dir)
    small = load_task(
        "bbh_object_counting", data_dir=data_dir, train_size=10, val_size=20, test_size=1000
    )
    assert small.train == full.train[:10]
    assert small.val == full.val[:20]
    assert small.test == full.test


def test_task_pickles() -> None:
    task = load_task("bbh_multistep_arithmetic_two", train_size=5)
    clone = pickle.loads(pickle.dumps(task))
    assert clone == task
    assert clone.score("Answer: -3", "-3") == 1.0


def rows(n: int) -> list[dict[str, str]]:
    return [{"input": f"What is {i} + {i}?", "target": str(2 * i)} for i in range(n)]


def test_custom_csv_split_and_numeric_scoring(tmp_path: Path) -> None:
    path = tmp_path / "doubles.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["input", "target"])
        writer.writeheader()
        writer.writerows(rows(250))
    task = load_task(str(path))
    assert task.name == "doubles"
    assert (len(task.train), len(task.val), len(task.test)) == (50, 100, 100)
    assert task.train[0] == Example("What is 0 + 0?", "0", "doubles")
    assert task.answer_type == "number"
    assert task.initial_prompt == TEXTGRAD_PROMPT
    assert task.score("Answer: 1,000.0", "1000") == 1.0


def test_custom_json_and_text_answers(tmp_path: Path) -> None:
    examples = [
        {"input": f"Question {i}?", "target": "(A)" if i % 2 else "yes", "key": f"k{i % 3}"}
        for i in range(10)
    ]
    path = tmp_path / "choices.json"
    path.write_text(json.dumps({"examples": examples}))
    task = load_task(path)  # a Path works too
    assert (len(task.train), len(task.val), len(task.test)) == (2, 4, 4)
    assert task.answer_type == "text"
    assert task.initial_prompt.endswith(task.answer_format)
    assert task.train[1].key == "k1"
    assert task.score("I think... **Answer:** (a).", "(A)") == 1.0
    assert task.score("Answer: Yes", "yes") == 1.0
    assert task.score("Answer: no", "yes") == 0.0
    # A bare list is accepted as well.
    path.write_text(json.dumps(examples))
    assert load_task(path).train == task.train


def test_custom_gsm8k_style_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "math.jsonl"
    lines = [
        json.dumps({"question": f"Q{i}", "answer": f"work\n#### {1000 + i:,}"}) for i in range(5)
    ]
    path.write_text("\n".join(lines) + "\n\n")
    task = load_task(str(path))
    assert [ex.target for ex in all_examples(task)] == ["1000", "1001", "1002", "1003", "1004"]
    assert task.answer_type == "number"


def test_sample_examples(data_dir: Path, tmp_path: Path) -> None:
    generated = sample_examples("bbh_object_counting", 30, seed=1)
    assert len(generated) == 30
    assert generated == sample_examples("bbh_object_counting", 30, seed=1)
    real = sample_examples("bbh_object_counting", 30, seed=1, data_dir=data_dir)
    pool = {ex.input for ex in all_examples(load_task("bbh_object_counting", data_dir=data_dir))}
    assert {ex.input for ex in real} <= pool
    assert len(sample_examples("gsm8k", 3, seed=0, data_dir=data_dir)) == 3
    path = tmp_path / "doubles.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows(20)))
    assert len(sample_examples(str(path), 20, seed=0)) == 20
