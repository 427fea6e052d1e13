"""Tasks from a user's file: BBH-style JSON, JSONL or CSV with input/target columns."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from fedtextgrad.errors import DataError
from fedtextgrad.tasks.base import (
    NUMBER_FORMAT,
    NUMBER_PROMPT,
    TEXT_FORMAT,
    TEXT_PROMPT,
    Example,
    Task,
    build_task,
    split_by_fractions,
)
from fedtextgrad.tasks.scoring import canonical_number

SUFFIXES = (".json", ".jsonl", ".csv")
_COLUMNS_HINT = "name them 'input' and 'target' (or GSM8K's 'question' and 'answer')"


def _read_json(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path} is not valid JSON (line {err.lineno}: {err.msg}): fix the file"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("examples"), list):
        return data["examples"]
    if isinstance(data, list):
        return data
    raise DataError(
        f'{path} has no "examples" list: use {{"examples": [{{"input": ..., "target": ...}}]}}'
    )


def _read_jsonl(path: Path) -> list[Any]:
    rows = []
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path} line {number} is not valid JSON ({err.msg}): put one object per line"
            ) from None
    return rows


def _read_csv(path: Path) -> list[Any]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        if not ({"input", "target"} <= columns or {"question", "answer"} <= columns):
            found = ", ".join(reader.fieldnames or ()) or "none"
            raise DataError(f"{path} lacks input/target columns (found: {found}): {_COLUMNS_HINT}")
        return list(reader)


def _field(row: dict, name: str, path: Path, number: int) -> str:
    value = row[name]
    if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
        raise DataError(f"{path} row {number}: '{name}' must be text, got {value!r}")
    text = "" if value is None else str(value).strip()
    if not text:  # also a CSV row cut short
        raise DataError(f"{path} row {number}: '{name}' is empty: fill it or drop the row")
    return text


def _gsm8k_target(answer: str) -> str:
    """The part after GSM8K's last '####'; numbers canonical ("1,080" -> "1080")."""
    final = answer.rsplit("####", 1)[-1].strip()
    return canonical_number(final) or final


def row_to_example(row: Any, number: int, path: Path, task: str) -> Example:
    """One file row as an Example, or a one-line error naming the row and the fix."""
    if not isinstance(row, dict):
        raise DataError(f"{path} row {number} is not an object: {_COLUMNS_HINT}")
    key = str(row.get("key") or "")
    if "input" in row and "target" in row:
        return Example(
            _field(row, "input", path, number), _field(row, "target", path, number), task, key
        )
    if "question" in row and "answer" in row:
        answer = _gsm8k_target(_field(row, "answer", path, number))
        return Example(_field(row, "question", path, number), answer, task, key)
    found = ", ".join(map(str, row)) or "none"
    raise DataError(f"{path} row {number} lacks input/target (found: {found}): {_COLUMNS_HINT}")


def read_examples(path: Path, task: str) -> list[Example]:
    """All rows of a .json/.jsonl/.csv file as Examples of `task`."""
    readers = {".json": _read_json, ".jsonl": _read_jsonl, ".csv": _read_csv}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type: use a .json, .jsonl or .csv file")
    if not path.is_file():
        raise DataError(f"task file '{path}' not found: check the path")
    try:
        rows = reader(path)
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text: save it as UTF-8") from None
    except csv.Error as error:
        raise DataError(f"{path} is not a readable CSV file ({error}): fix the file") from None
    except RecursionError:
        raise DataError(f"{path} nests too deeply to hold examples: fix the file") from None
    except ValueError:  # an integer past Python's 4300-digit limit
        raise DataError(
            f"{path} holds a number too large to read: quote it as text, or fix the file"
        ) from None
    if not rows:
        raise DataError(f"{path} has no examples: add rows with input and target")
    return [row_to_example(row, n, path, task) for n, row in enumerate(rows, start=1)]


def load(path: Path, sizes: tuple[int | None, ...]) -> Task:
    """First 20% train, next 40% val, rest test; numeric targets get the numeric prompt."""
    name = path.stem
    examples = read_examples(path, name)
    numeric = all(canonical_number(ex.target) is not None for ex in examples)
    return build_task(
        name,
        split_by_fractions(examples),
        prompt=NUMBER_PROMPT if numeric else TEXT_PROMPT,
        answer_format=NUMBER_FORMAT if numeric else TEXT_FORMAT,
        answer_type="number" if numeric else "text",
        source=str(path),
        sizes=sizes,
    )
