"""The packaged instruction-induction tasks: data, seeded splits, prompt and the benchmark's
scoring."""

import json
import re
from pathlib import Path

import pytest

from fedtextgrad import FedTextGradError, load_config
from fedtextgrad.federated import prepare_data
from fedtextgrad.tasks import instruction_induction as ii
from fedtextgrad.tasks import list_tasks, load_task, sample_examples, scoring
from fedtextgrad.tasks._derive_ii import derive_task, dump
from fedtextgrad.tasks.registry import data_status

SMALL_POOLS = {"ii_cause_and_effect": 26, "ii_common_concept": 16, "ii_informal_to_formal": 15}


def inputs(examples) -> set[str]:
    return {ex.input for ex in examples}


def test_names_and_packaged_files() -> None:
    assert len(ii.TASKS) == 19 and ii.NAMES[0] == "ii_antonyms"
    assert "ii_translation_en-de" in ii.NAMES and set(ii.NAMES) <= set(list_tasks())
    assert sorted(p.stem for p in ii.DATA_DIR.glob("*.json")) == sorted(ii.TASKS)
    assert (ii.DATA_DIR / "LICENSE.APE.txt").read_text().startswith("MIT License")
    assert "Honovich" in (ii.DATA_DIR / "README.txt").read_text()
    assert sum(p.stat().st_size for p in ii.DATA_DIR.iterdir()) < 1_000_000
    assert {data_status()[name] for name in ii.NAMES} == {"packaged"}


@pytest.mark.parametrize("name", ii.NAMES)
def test_every_task_loads_without_a_data_dir(name: str) -> None:
    task = load_task(name)
    data = json.loads(ii.data_file(name).read_text())
    pool = len(data["pool"])
    assert pool == SMALL_POOLS.get(name, 300)
    expected = (50, 50) if pool >= 100 else ((pool + 1) // 2, pool // 2)
    assert (len(task.train), len(task.val)) == expected
    # The test set is the benchmark's, whole and in order; every acceptable answer is kept.
    assert [(ex.input, ex.target.split("\n")) for ex in task.test] == [
        (row["input"], row["answers"]) for row in data["test"]
    ]
    assert task.answer_type == data["metric"] and task.source == str(ii.data_file(name))
    assert {ex.task for ex in task.train + task.val + task.test} == {name}
    assert not inputs(task.train) & inputs(task.val)
    assert not (inputs(task.train) | inputs(task.val)) & inputs(task.test)
    assert ii.instructions(name) == data["instructions"] and data["instructions"]
    for ex in task.train + task.val + task.test:
        answers = ex.target.split("\n")
        assert all(answers) and task.score(f"Answer: {answers[-1]}", ex.target) == 1.0


def test_metrics_follow_the_benchmark() -> None:
    metrics = {name: load_task(name).answer_type for name in ii.NAMES}
    assert {name for name, metric in metrics.items() if metric != "exact"} == {
        "ii_common_concept",
        "ii_informal_to_formal",
        "ii_orthography_starts_with",
        "ii_taxonomy_animal",
        "ii_synonyms",
    }
    assert metrics["ii_informal_to_formal"] == "f1" and metrics["ii_synonyms"] == "contains"
    assert metrics["ii_taxonomy_animal"] == "word_set"


def test_splits_are_seeded() -> None:
    first = load_task("ii_antonyms", data_seed=0)
    assert load_task("ii_antonyms", data_seed=0) == first
    other = load_task("ii_antonyms", data_seed=1)
    assert inputs(other.train) != inputs(first.train)
    assert other.test == first.test  # the benchmark's test set does not move


def test_explicit_sizes() -> None:
    task = load_task("ii_antonyms", train_size=10, val_size=5, test_size=3)
    assert (len(task.train), len(task.val), len(task.test)) == (10, 5, 3)
    # An unset size takes what the other leaves.
    small = load_task("ii_cause_and_effect", train_size=20)
    assert (len(small.train), len(small.val)) == (20, 6)
    small = load_task("ii_cause_and_effect", val_size=20)
    assert (len(small.train), len(small.val)) == (6, 20)
    big = load_task("ii_antonyms", train_size=280)
    assert (len(big.train), len(big.val)) == (280, 20)


@pytest.mark.parametrize(
    ("name", "sizes", "message"),
    [
        ("ii_cause_and_effect", {"train_size": 30}, r"26 examples .* not 30 \+ 0"),
        ("ii_antonyms", {"train_size": 200, "val_size": 200}, r"has 300 .* 200 \+ 200"),
        ("ii_informal_to_formal", {"train_size": 15}, "empty val split"),
    ],
)
def test_sizes_beyond_the_pool_fail(name: str, sizes: dict, message: str) -> None:
    with pytest.raises(FedTextGradError, match=message):
        load_task(name, **sizes)


def test_sample_draws_from_the_pool() -> None:
    drawn = sample_examples("ii_singular_to_plural", 5, seed=3)
    assert drawn == sample_examples("ii_singular_to_plural", 5, seed=3)
    assert len(inputs(drawn)) == 5
    assert not inputs(drawn) & inputs(load_task("ii_singular_to_plural").test)
    with pytest.raises(FedTextGradError, match="asked for 301"):
        sample_examples("ii_singular_to_plural", 301, seed=0)


def test_initial_prompt_does_not_give_the_task_away() -> None:
    task = load_task("ii_singular_to_plural")
    assert task.initial_prompt.endswith(task.answer_format)
    assert "$" not in task.initial_prompt  # small models echo '$VALUE'
    assert "short questions" in task.role
    prompt = task.initial_prompt.lower()
    for name in ii.TASKS:
        assert re.sub("[_-]", " ", name) not in prompt
    giveaways = [
        "plural",
        "antonym",
        "opposite",
        "translat",
        "rhym",
        "synonym",
        "letter",
        "cause",
        "animal",
        "formal",
        "common",
        "similar",
        "same",
        "spell",
        "add",
    ]
    assert not [word for word in giveaways if word in prompt]
    assert {load_task(name).initial_prompt for name in ii.NAMES} == {task.initial_prompt}


@pytest.mark.parametrize(
    ("metric", "response", "target", "expected"),
    [
        # exact: after the benchmark's normalization (first line, up to '.', no punctuation)
        ("exact", "Answer: Ends.", "ends", 1.0),
        ("exact", "**Answer:** ends", "ends", 1.0),
        ("exact", "ends\nThe plural adds an s.", "ends", 1.0),  # no marker: the first line
        ("exact", "I think so.\nAnswer: ends", "ends", 1.0),
        ("exact", "Answer: the ends", "ends", 0.0),
        ("exact", "Answer:", "ends", 0.0),
        ("exact", "", "ends", 0.0),
        ("exact", "Answer: Zeit messen", "Zeit\nZeiten\nZeit messen", 1.0),  # any answer
        ("exact", "Answer: Uhr", "Zeit\nZeiten\nZeit messen", 0.0),
        ("exact", "Answer: no", "not the same\nno\nfalse", 1.0),  # word_in_context
        ("exact", "Answer: same", "not the same\nno\nfalse", 0.0),
        ("exact", "Answer: 5 - perfectly", "5 - perfectly", 1.0),
        ("exact", "Answer: 5", "5 - perfectly", 0.0),
        ("exact", "Answer: Sentence 1: It started raining.", "It started raining.", 1.0),
        # f1: token overlap, the best over the answers
        (
            "f1",
            "Answer: It is my view that this is interesting.",
            "It is my opinion that this is interesting.",
            7 / 8,
        ),
        (
            "f1",
            "Answer: my opinion is interesting",
            "It is my opinion that this is interesting.",
            2 / 3,
        ),
        (
            "f1",
            "Answer: they involve vertical movement",
            "involve going up.\ninvolve vertical movement.",
            6 / 7,
        ),
        ("f1", "Answer: nothing here", "involve going up.", 0.0),
        # word_set: the same words in any order (" and " drops out)
        ("word_set", "Answer: bear, beetle, kangaroo, bird", "beetle, bear, kangaroo, bird", 1.0),
        (
            "word_set",
            "Answer: bear, beetle, kangaroo and bird",
            "beetle, bear, kangaroo, bird",
            1.0,
        ),
        ("word_set", "Answer: bear, beetle, kangaroo", "beetle, bear, kangaroo, bird", 0.0),
        # contains: the answer as a whole word or phrase
        ("contains", "Answer: a process", "process", 1.0),
        ("contains", "Answer: Process.", "process", 1.0),
        ("contains", "Answer: processing", "process", 0.0),
    ],
)
def test_benchmark_scoring(metric: str, response: str, target: str, expected: float) -> None:
    assert scoring.score(metric, response, target) == pytest.approx(expected)


def test_benchmark_extract_and_normalization() -> None:
    assert scoring.extract("exact", "Answer: Ice-Cream and Cake!") == "ice cream cake"
    assert scoring.extract("contains", "Answer:\n\n  A process.") == "a process"
    assert scoring.extract("word_set", "  \n") is None
    assert scoring.normalize_benchmark("Sentence 1: It rained. Sentence 2: x") == "it rained"


def test_heterogeneous_federation_prepares_data() -> None:
    names = ["ii_antonyms", "ii_singular_to_plural"]
    cfg = load_config(
        {
            "task": {"names": names, "train_size": 10},
            "federation": {"clients": 2, "partition": "by_task"},
            "eval": {"val_size": 4, "test_size": 5},
        }
    )
    data = prepare_data(cfg)
    assert list(data.objective.tasks) == names
    assert [{ex.task for ex in part} for part in data.client_train] == [{n} for n in names]
    assert [len(part) for part in data.client_train] == [10, 10]
    assert len(data.val) == 8 and len(data.test) == 10
    assert data.objective.initial_prompt == load_task(names[0]).initial_prompt


def test_the_server_s_own_validation_leaves_the_clients_data_as_it_was() -> None:
    setting = {
        "task": {"names": ["ii_sum", "ii_antonyms"], "train_size": 10},
        "federation": {"clients": 4, "partition": "by_task"},
        "eval": {"val_size": 4, "test_size": 5},
    }
    shared = prepare_data(load_config(setting))
    own = prepare_data(load_config(setting, ["eval.server_val_size=6"]))
    assert own.client_train == shared.client_train and own.client_val == shared.client_val
    assert inputs(shared.val) == inputs(ex for part in shared.client_val for ex in part)
    assert [ex.task for ex in own.val] == ["ii_sum"] * 6 + ["ii_antonyms"] * 6
    assert not inputs(own.val) & inputs(shared.val) and own.test == shared.test


def test_too_few_examples_for_the_server_s_own_validation(tmp_path: Path) -> None:
    path = tmp_path / "doubles.jsonl"  # a custom task: 20 examples, 8 of them for validation
    path.write_text(
        "\n".join(json.dumps({"question": f"{i}?", "answer": f"#### {2 * i}"}) for i in range(20))
    )
    cfg = load_config({"task": {"name": str(path)}, "eval": {"val_size": 4, "server_val_size": 5}})
    with pytest.raises(FedTextGradError, match=r"doubles has fewer than eval.val_size \+ eval"):
        prepare_data(cfg)
    assert len(prepare_data(load_config(cfg.model_dump(), ["eval.server_val_size=4"])).val) == 4


@pytest.mark.parametrize("task", ["cause_and_effect", "translation_en-fr", "common_concept"])
def test_packaged_files_match_the_derivation(data_dir: Path, task: str) -> None:
    source = data_dir / "instruction_induction"
    if not source.is_dir():
        pytest.skip(f"{source} not found")
    packaged = ii.data_file(task).read_text(encoding="utf-8")
    assert dump(derive_task(source, task)) == packaged
    assert json.loads(packaged) == derive_task(source, task)


def test_the_optimizer_is_shown_every_acceptable_answer_up_to_five():
    task = load_task("ii_word_in_context", test_size=1)
    assert task.shown_target("not the same\nno\nfalse") == '"not the same" or "no" or "false"'
    assert task.shown_target("\n".join("abcdefg")) == '"a" or "b" or "c" or "d" or "e"'
    assert task.shown_target("same") == "same"
    # Other answer types never split a target: a newline there is part of the answer.
    assert load_task("bbh_object_counting").shown_target("1\n2") == "1\n2"
