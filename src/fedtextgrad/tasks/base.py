"""Examples, tasks, prompts and the split rules shared by all loaders."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fedtextgrad.errors import DataError
from fedtextgrad.tasks import scoring

DATA_ENV = "FEDTEXTGRAD_DATA"

ROLE = "system prompt to a language model that answers reasoning questions"
_REASONING = "You will answer a reasoning question. Think step by step. "
_FORMAT = "The last line of your response should be of the following format: 'Answer: $VALUE' "
NUMBER_FORMAT = _FORMAT + "where VALUE is a numerical value."
WORDS_FORMAT = _FORMAT + "where VALUE is the sorted words separated by single spaces."
TEXT_FORMAT = _FORMAT + "where VALUE is your final answer."
NUMBER_PROMPT = _REASONING + NUMBER_FORMAT  # TextGrad's prompt for BBH and GSM8K
WORDS_PROMPT = _REASONING + WORDS_FORMAT
TEXT_PROMPT = "You will answer a question. Think step by step. " + TEXT_FORMAT

# Instruction induction: the initial prompt must not give the task away (finding it is the
# optimizer's job). The format sentence was chosen by measurement (bench/results/ii_format/: four
# sentences, the 0.5B model, 6 tasks x 20 examples): this one was followed every time and gave
# the human instructions their best score; TextGrad's "$VALUE" sentence scored lowest.
SHORT_ROLE = "system prompt to a language model that answers short questions"
SHORT_FORMAT = "Reply in the form 'Answer: <your answer>' and nothing else."
SHORT_PROMPT = "Respond to the input. " + SHORT_FORMAT


@dataclass(frozen=True)
class Example:
    input: str
    target: str
    task: str
    key: str = ""  # skew key for Dirichlet partitioning, e.g. the counted kind


@dataclass(frozen=True)
class Task:
    name: str
    initial_prompt: str
    answer_format: str
    role: str
    train: tuple[Example, ...]
    val: tuple[Example, ...]
    test: tuple[Example, ...]
    answer_type: str = "number"  # one of scoring.ANSWER_TYPES: how answers are parsed
    source: str = ""  # where the examples came from: a file path or the generator and its seed

    def __post_init__(self) -> None:
        if self.answer_type not in scoring.ANSWER_TYPES:
            raise ValueError(f"answer_type must be one of {scoring.ANSWER_TYPES}")
        if not self.initial_prompt.endswith(self.answer_format):
            raise ValueError("answer_format must be the last sentence of initial_prompt")

    def extract(self, response: str) -> str | None:
        """The response's final answer (normalized), or None if it gives none."""
        return scoring.extract(self.answer_type, response)

    def shown_target(self, target: str) -> str:
        """The target as the optimizer's prompts show it (several answers: '"a" or "b"')."""
        return scoring.shown_target(self.answer_type, target)

    def score(self, response: str, target: str) -> float:
        """1.0 if the response's final answer matches the target, else 0.0 (for "f1": the
        token overlap, a fraction)."""
        return scoring.score(self.answer_type, response, target)


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The data directory: the argument, else $FEDTEXTGRAD_DATA, else None (generators only)."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_ENV) or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        # A mistyped path must not silently swap real data for generated data.
        origin = "data_dir" if data_dir not in (None, "") else f"${DATA_ENV}"
        raise DataError(
            f"data directory '{path}' (from {origin}) does not exist: "
            f"point task.data_dir / {DATA_ENV} at a folder holding bbh/ and gsm8k/, or unset it"
        )
    return path


def split_by_fractions(
    examples: Sequence[Example], train: float = 0.2, val: float = 0.4
) -> tuple[list[Example], list[Example], list[Example]]:
    """First `train` share, next `val` share, rest test (BBH: 50/100/100 of 250)."""
    n = len(examples)
    n_train = round(n * train)
    n_val = round(n * (train + val)) - n_train
    return (
        list(examples[:n_train]),
        list(examples[n_train : n_train + n_val]),
        list(examples[n_train + n_val :]),
    )


def build_task(
    name: str,
    splits: tuple[Sequence[Example], Sequence[Example], Sequence[Example]],
    *,
    prompt: str,
    answer_format: str,
    answer_type: str,
    source: str,
    sizes: tuple[int | None, int | None, int | None] = (None, None, None),
    role: str = ROLE,
) -> Task:
    """Truncate each split to its size (first n) and refuse empty splits."""
    parts = []
    for split_name, examples, size in zip(("train", "val", "test"), splits, sizes, strict=True):
        if size is not None and size < 0:
            raise DataError(f"{split_name}_size is {size}: use a positive number or None")
        kept = tuple(examples[:size] if size is not None else examples)
        if not kept:
            raise DataError(
                f"task '{name}' has an empty {split_name} split ({len(examples)} examples "
                f"available, {split_name}_size={size}): use more data or a larger {split_name}_size"
            )
        parts.append(kept)
    train, val, test = parts
    return Task(
        name=name,
        initial_prompt=prompt,
        answer_format=answer_format,
        role=role,
        train=train,
        val=val,
        test=test,
        answer_type=answer_type,
        source=source,
    )


def draw(pool: Sequence[Example], n: int, seed: int, source: str) -> list[Example]:
    """n distinct examples from pool, reproducibly."""
    if n > len(pool):
        raise DataError(f"asked for {n} examples but {source} has {len(pool)}: ask for fewer")
    return random.Random(seed).sample(list(pool), n)
