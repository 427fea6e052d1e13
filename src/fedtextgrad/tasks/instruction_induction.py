"""Instruction induction (Honovich et al. 2022): 19 tasks whose input alone does not say what
to do ("end" -> "ends"), as APE (Zhou et al., ICLR 2023) evaluates prompt optimizers on them.

The data ships in ``ii_data/`` (MIT; see ``ii_data/README.txt``, rebuilt by ``_derive_ii``):
per task a demonstration pool, from which train and validation are drawn (seeded, disjoint),
and the benchmark's test examples. A target holds every acceptable answer, one per line: the
benchmark keeps only a prediction's first line, so no acceptable answer contains a newline.
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path
from typing import Any

from fedtextgrad.errors import DataError
from fedtextgrad.tasks.base import (
    SHORT_FORMAT,
    SHORT_PROMPT,
    SHORT_ROLE,
    Example,
    Task,
    build_task,
    draw,
)
from fedtextgrad.tasks.scoring import ANSWER_SEP

DATA_DIR = Path(__file__).with_name("ii_data")
PREFIX = "ii_"
TASKS = (
    "antonyms",
    "cause_and_effect",
    "common_concept",
    "first_word_letter",
    "informal_to_formal",
    "larger_animal",
    "letters_list",
    "orthography_starts_with",
    "rhymes",
    "second_word_letter",
    "sentence_similarity",
    "singular_to_plural",
    "sum",
    "synonyms",
    "taxonomy_animal",
    "translation_en-de",
    "translation_en-es",
    "translation_en-fr",
    "word_in_context",
)
NAMES = tuple(PREFIX + task for task in TASKS)
DEFAULT_SIZE = 50  # train and validation each, when the pool allows


def data_file(name: str) -> Path:
    return DATA_DIR / f"{name.removeprefix(PREFIX)}.json"


@cache
def _data(name: str) -> dict[str, Any]:
    if name not in NAMES:
        raise DataError(f"unknown instruction-induction task '{name}': use one of {NAMES}")
    return json.loads(data_file(name).read_text(encoding="utf-8"))


def _examples(name: str, part: str) -> list[Example]:
    return [
        Example(row["input"], ANSWER_SEP.join(row["answers"]), name) for row in _data(name)[part]
    ]


def instructions(name: str) -> list[str]:
    """The human-written instructions of the task (the benchmark's reference prompts)."""
    return list(_data(name)["instructions"])


def split_sizes(pool: int, train_size: int | None, val_size: int | None) -> tuple[int, int]:
    """(train, val): DEFAULT_SIZE each, or the pool in halves (train gets the odd one) when it
    is smaller; an unset size shrinks to what the other leaves."""
    train = train_size
    if train is None:
        train = max(0, min(DEFAULT_SIZE, (pool + 1) // 2, pool - (val_size or 0)))
    val = max(0, min(DEFAULT_SIZE, pool - train)) if val_size is None else val_size
    return train, val


def load(name: str, seed: int, sizes: tuple[int | None, int | None, int | None]) -> Task:
    """Train and validation drawn from the pool by `seed`; test is the benchmark's, in order."""
    pool = _examples(name, "pool")
    train_size, val_size, test_size = sizes
    n_train, n_val = split_sizes(len(pool), train_size, val_size)
    if n_train + n_val > len(pool):
        raise DataError(
            f"task '{name}' has {len(pool)} examples for train and validation, not "
            f"{n_train} + {n_val}: lower train_size/val_size to at most {len(pool)} in all"
        )
    # A per-task stream, so tasks of a heterogeneous run do not share one permutation.
    drawn = random.Random(f"{name}/{seed}").sample(pool, len(pool))
    return build_task(
        name,
        (drawn[:n_train], drawn[n_train : n_train + n_val], _examples(name, "test")),
        prompt=SHORT_PROMPT,
        answer_format=SHORT_FORMAT,
        answer_type=_data(name)["metric"],
        source=str(data_file(name)),
        sizes=(train_size, val_size, test_size),  # build_task rejects negative and zero sizes
        role=SHORT_ROLE,
    )


def sample(name: str, n: int, seed: int) -> list[Example]:
    """n examples drawn from the pool (kept apart from the test examples)."""
    return draw(_examples(name, "pool"), n, seed, str(data_file(name)))
