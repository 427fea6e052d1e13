"""Rebuild the packaged instruction-induction data in ``ii_data/`` (maintainers only).

Usage: ``python -m fedtextgrad.tasks._derive_ii SOURCE`` where SOURCE is the APE copy of the
benchmark (``raw/induce/``, ``raw/execute/``, ``annotations/``, ``LICENSE.APE``).

Each task becomes ``ii_data/TASK.json``: ``{"metric", "instructions", "pool", "test"}`` with
examples ``{"input": str, "answers": [str, ...]}`` converted as the benchmark defines them. The
pool (where train and validation are drawn from) is the induce set without repeated examples and
without examples whose input is also a test input, then cut to a seeded sample of POOL_SIZE; the
test set is every execute example.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any

from fedtextgrad.tasks.instruction_induction import DATA_DIR, TASKS

POOL_SIZE = 300
POOL_SEED = 0
# The benchmark's metric per task; every other task is scored by exact match.
METRICS = {
    "common_concept": "f1",
    "informal_to_formal": "f1",
    "orthography_starts_with": "word_set",
    "taxonomy_animal": "word_set",
    "synonyms": "contains",
}
# The field listing every acceptable answer, where the benchmark has one besides "output".
ALTERNATIVES = {
    "rhymes": "other_rhymes",
    "word_in_context": "possible_outputs",
    **{task: "possible_translations" for task in TASKS if task.startswith("translation_")},
}
README = """\
Instruction-induction data (19 tasks), trimmed for fedtextgrad's built-in `ii_*` tasks.

Source: Honovich, Shaham, Bowman, Levy, "Instruction Induction: From Few Examples to Natural
Language Task Descriptions" (2022), as distributed with the Automatic Prompt Engineer (APE;
Zhou et al., "Large Language Models Are Human-Level Prompt Engineers", ICLR 2023) in
keirp/automatic_prompt_engineer, experiments/data/instruction_induction/. MIT license: see
LICENSE.APE.txt (the license file of that repository).

What was changed: each example was converted to {"input", "answers"} as the benchmark defines
it (cause_and_effect, common_concept, rhymes, translation_*, word_in_context have their own
fields; see fedtextgrad/tasks/_derive_ii.py). "test" holds every example of raw/execute/.
"pool" holds a random sample (seed 0) of at most 300 examples of raw/induce/, after dropping
repeated examples and examples whose input is also a test input; the rest of raw/induce/ and
every other field of the raw files were left out. "instructions" are the human-written
instructions of annotations/.
"""


def _unique(answers: list[str]) -> list[str]:
    """In order, without repeats and blanks (one of translation_en-fr's answers is "")."""
    return [answer for answer in dict.fromkeys(answers) if answer.strip()]


def convert(task: str, key: str, row: dict[str, Any]) -> dict[str, Any]:
    """One raw example as {"input", "answers"}; `key` seeds cause_and_effect's sentence order."""
    if task == "cause_and_effect":
        # The benchmark shows the two sentences in random order: fixed here per example.
        pair = [row["cause"], row["effect"]]
        if random.Random(f"{task}/{key}").random() < 0.5:
            pair.reverse()
        return {"input": f"Sentence 1: {pair[0]} Sentence 2: {pair[1]}", "answers": [row["cause"]]}
    if task == "common_concept":
        # The benchmark's input leaves out the last item.
        return {
            "input": ", ".join(row["items"][:-1]),
            "answers": _unique([row["concept"], *row["all_common_concepts"]]),
        }
    others = row.get(ALTERNATIVES.get(task, ""), [])
    return {"input": row["input"], "answers": _unique([row["output"], *others])}


def _read(path: Path, task: str, split: str) -> list[dict[str, Any]]:
    examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
    return [convert(task, f"{split}/{key}", row) for key, row in examples.items()]


def derive_task(source: Path, task: str) -> dict[str, Any]:
    """The packaged content of one task."""
    test = _read(source / "raw" / "execute" / f"{task}.json", task, "execute")
    test_inputs = {ex["input"] for ex in test}
    seen: set[str] = set()
    pool = []
    for ex in _read(source / "raw" / "induce" / f"{task}.json", task, "induce"):
        # Repeats would land in both train and validation; test inputs would leak.
        fingerprint = json.dumps([ex["input"], sorted(ex["answers"])])
        if fingerprint not in seen and ex["input"] not in test_inputs:
            seen.add(fingerprint)
            pool.append(ex)
    if len(pool) > POOL_SIZE:
        pool = random.Random(POOL_SEED).sample(pool, POOL_SIZE)
    annotations = json.loads((source / "annotations" / f"{task}.json").read_text())
    return {
        "metric": METRICS.get(task, "exact"),
        "instructions": annotations["annotations"],
        "pool": pool,
        "test": test,
    }


def dump(data: dict[str, Any]) -> str:
    """The file text: one example per line keeps the files small and diffs readable."""
    lines = [
        "{",
        f'"metric": {json.dumps(data["metric"])},',
        f'"instructions": {json.dumps(data["instructions"], ensure_ascii=False)},',
    ]
    for part in ("pool", "test"):
        rows = ",\n".join(json.dumps(ex, ensure_ascii=False) for ex in data[part])
        end = "]" if part == "test" else "],"
        lines.append(f'"{part}": [\n{rows}\n{end}')
    return "\n".join(lines) + "\n}\n"


def main(source_dir: str) -> None:
    source = Path(source_dir)
    DATA_DIR.mkdir(exist_ok=True)
    for task in TASKS:
        (DATA_DIR / f"{task}.json").write_text(dump(derive_task(source, task)), encoding="utf-8")
    # .txt names: the package ships **/*.txt and **/*.json only.
    shutil.copyfile(source / "LICENSE.APE", DATA_DIR / "LICENSE.APE.txt")
    (DATA_DIR / "README.txt").write_text(README, encoding="utf-8")
    total = sum(path.stat().st_size for path in DATA_DIR.iterdir())
    print(f"wrote {len(TASKS)} tasks to {DATA_DIR} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main(sys.argv[1])
