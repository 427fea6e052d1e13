"""GSM8K from the user's copy of the official JSONL files (no faithful generator exists).

Two splits of the same files, both cut from each file shuffled by a fresh random.Random(0)
(DSPy's order): `gsm8k` is TextGrad's, `gsm8k_paper` is the one the FedTextGrad paper's code
(ubc-tea/FedTextGrad) runs."""

from __future__ import annotations

import random
from pathlib import Path

from fedtextgrad.errors import DataError
from fedtextgrad.tasks.base import (
    DATA_ENV,
    NUMBER_FORMAT,
    NUMBER_PROMPT,
    Example,
    Task,
    build_task,
    draw,
)
from fedtextgrad.tasks.custom import read_examples

NAME, PAPER_NAME = "gsm8k", "gsm8k_paper"
FILES = ("gsm8k/train.jsonl", "gsm8k/test.jsonl")
# Task name -> (train, val, test) slices; train and val come from the train file.
SPLITS: dict[str, tuple[slice, slice, slice]] = {
    # TextGrad's (DSPy's): train[:200], val train[200:500], all 1319 test problems.
    NAME: (slice(0, 200), slice(200, 500), slice(None)),
    # The paper's code: train[:50], val train[200:300], test[300:400] (train[50:200] unused).
    PAPER_NAME: (slice(0, 50), slice(200, 300), slice(300, 400)),
}
NAMES = tuple(SPLITS)


def data_files(data_dir: Path | None) -> tuple[Path, Path] | None:
    """(train, test) under data_dir, or None if either is missing."""
    if data_dir is None:
        return None
    train, test = (data_dir / f for f in FILES)
    return (train, test) if train.is_file() and test.is_file() else None


def _require_files(data_dir: Path | None) -> tuple[Path, Path]:
    files = data_files(data_dir)
    if files is None:
        where = f"under '{data_dir}'" if data_dir else "(no data directory set)"
        raise DataError(
            f"GSM8K data not found {where}: put {' and '.join(FILES)} in a folder and point "
            f"{DATA_ENV} or task.data_dir at it"
        )
    return files


def _shuffled(examples: list[Example]) -> list[Example]:
    # A fresh Random(0) per file, as DSPy's loader does, so the order matches the paper's.
    random.Random(0).shuffle(examples)
    return examples


def load(data_dir: Path | None, sizes: tuple[int | None, ...], name: str = NAME) -> Task:
    """The task `name` (a key of SPLITS) with its split of the shuffled files."""
    train_path, test_path = _require_files(data_dir)
    train = _shuffled(read_examples(train_path, name))
    test = _shuffled(read_examples(test_path, name))
    train_part, val_part, test_part = SPLITS[name]
    return build_task(
        name,
        (train[train_part], train[val_part], test[test_part]),
        prompt=NUMBER_PROMPT,
        answer_format=NUMBER_FORMAT,
        answer_type="number",
        source=str(train_path.parent),
        sizes=sizes,
    )


def sample(n: int, seed: int, data_dir: Path | None, name: str = NAME) -> list[Example]:
    """n examples drawn from the train file (kept apart from the test problems)."""
    train_path, _ = _require_files(data_dir)
    return draw(read_examples(train_path, name), n, seed, str(train_path))
