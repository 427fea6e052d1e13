"""The learning table (issue 30): each (task, method, setting) of the learning sweep, its seeds
pooled, against the initial prompt and the task's human instruction, on the same test examples.

    python bench/learning_table.py [--runs runs/learning] [--out docs/results/learning.json]

Reads the sweep's complete runs, scores the human instruction with the runs' forward model on
their test examples (cached: cheap when repeated), prints a markdown table and the goals, and
writes the rows. Runs not complete yet are left out: run it after each chunk of the sweep.
Each complete run's results.json is archived under docs/results/learning_runs/ (commit them): on a
new machine, `cp -r docs/results/learning_runs/. runs/learning/` and the sweep skips them."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
from collections import defaultdict
from functools import cache
from pathlib import Path

from fedtextgrad.config import ExperimentConfig
from fedtextgrad.federated.prepare import Engines, prepare_data
from fedtextgrad.stats import Paired, pooled
from fedtextgrad.sweep import SweepRun, load_sweep
from fedtextgrad.tasks import instruction_induction
from fedtextgrad.textgrad import evaluate

ROOT = Path(__file__).resolve().parents[1]
# The instruction-induction tasks; then BBH and GSM8K (ours only, no human instruction).
SWEEPS = (
    Path("configs/sweeps/measured/learning.toml"),
    Path("configs/sweeps/measured/learning_reasoning.toml"),
)
SETTINGS = {  # variant -> (method, setting)
    "ours": ("ours", "federated"),
    "ours_centralized": ("ours", "centralized"),
    "paper": ("paper", "federated"),
    "induce": ("induce", "centralized"),
}
ARCHIVE = ROOT / "docs" / "results" / "learning_runs"
HEADROOM = 0.20  # the goal's interval must clear 0 where the human instruction gains this much


def complete_runs(runs_dir: Path) -> dict[tuple[str, str], list[tuple[SweepRun, dict]]]:
    """(task, variant) -> [(run, results)] of the runs that finished with this sweep's config."""
    groups: dict[tuple[str, str], list[tuple[SweepRun, dict]]] = defaultdict(list)
    for sweep in SWEEPS:
        for run in load_sweep(ROOT / sweep).runs:
            if run.status(runs_dir) == "complete":
                results = json.loads((runs_dir / run.name / "results.json").read_text())
                groups[run.config.task.name, run.label["variant"]].append((run, results))
    return groups


@cache
def sweep_file(task: str) -> Path:
    """The sweep file that runs `task`."""
    return next(
        sweep
        for sweep in SWEEPS
        if any(run.config.task.name == task for run in load_sweep(ROOT / sweep).runs)
    )


async def human_scores(config: ExperimentConfig) -> list[float] | None:
    """The task's first human instruction, answered by the run's forward model on its test set
    (None: the task has none, as BBH and GSM8K)."""
    data = prepare_data(config)
    task = next(iter(data.objective.tasks.values()))
    if task.name not in instruction_induction.NAMES:
        return None
    prompt = f"{instruction_induction.instructions(task.name)[0]} {task.answer_format}"
    engines = Engines.open(config)
    try:
        attempts = await evaluate(
            engines.forward,
            prompt,
            data.test,
            data.objective,
            max_tokens=config.train.forward_max_tokens,
            purpose="test",
        )
    finally:
        await engines.aclose()
    return [a.score for a in attempts]


def row(task: str, variant: str, runs: list[tuple[SweepRun, dict]], human: float | None) -> dict:
    method, setting = SETTINGS[variant]
    pairs = [(r["initial"]["test_scores"], r["final"]["test_scores"]) for _, r in runs]
    gain = pooled(pairs)
    digests = {r["initial"]["test_examples"] for _, r in runs}
    assert len(digests) == 1, f"{task} {variant}: runs on different test examples"
    return {
        "task": task,
        "method": method,
        "setting": setting,
        "initial": round(gain.before, 4),
        "final": round(gain.after, 4),
        "human": None if human is None else round(human, 4),
        "diff": round(gain.diff, 4),
        "low": round(gain.low, 4),
        "high": round(gain.high, 4),
        "recovered": (
            round(gain.diff / (human - gain.before), 3)
            if human is not None and human > gain.before
            else None
        ),
        "seeds": [run.seed for run, _ in runs],
        "finals": [round(r["final"]["test_accuracy"], 4) for _, r in runs],  # seed by seed
        "n": gain.n,
        "tokens": round(sum(r["usage"]["tokens_used"] for _, r in runs) / len(runs)),
        "seconds": round(sum(r["wall_seconds"] for _, r in runs) / len(runs)),
        "command": (
            f"fedtextgrad sweep {sweep_file(task)} --out runs/learning "
            f"--only '{variant}__name={task}__*'"
        ),
    }


def compare(groups, tasks: list[str], base: str, other: str) -> Paired | None:
    """other's final prompts against base's on the same test examples, the tasks' examples
    side by side and the seeds paired by number; only seeds both ran on every task."""

    def finals(variant: str) -> dict[tuple[int, str], list[float]]:
        return {
            (run.seed, task): results["final"]["test_scores"]
            for task in tasks
            for run, results in groups.get((task, variant), [])
        }

    a, b = finals(base), finals(other)
    seeds = {seed for seed, _ in a} & {seed for seed, _ in b}
    seeds = [s for s in sorted(seeds) if all((s, t) in a and (s, t) in b for t in tasks)]
    pairs = [(sum((a[s, t] for t in tasks), []), sum((b[s, t] for t in tasks), [])) for s in seeds]
    return pooled(pairs) if pairs else None


def pct(x: float) -> str:
    return f"{100 * x:+.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "learning")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "learning.json")
    args = parser.parse_args()
    groups = complete_runs(args.runs)
    for runs in groups.values():
        for run, _ in runs:
            (ARCHIVE / run.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(args.runs / run.name / "results.json", ARCHIVE / run.name)
    tasks = list(dict.fromkeys(task for task, _ in groups))
    humans = {}
    for task in tasks:
        run, _ = next(runs[0] for (t, _), runs in groups.items() if t == task)
        scores = asyncio.run(human_scores(run.config))
        humans[task] = None if scores is None else sum(scores) / len(scores)
    rows = [
        row(task, variant, groups[task, variant], humans[task])
        for task in tasks
        for variant in SETTINGS
        if (task, variant) in groups
    ]
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(
        "| task | method | setting | initial | human | final (per seed) | gain, 95% CI "
        "| recovered | tokens/run | s/run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = f"{100 * r['recovered']:.0f}%" if r["recovered"] is not None else "—"
        finals = ", ".join(f"{f:.2f}" for f in r["finals"])
        print(
            f"| {r['task']} | {r['method']} | {r['setting']} | {r['initial']:.2f} | "
            f"{'—' if r['human'] is None else format(r['human'], '.2f')} | {r['final']:.2f} ({finals}) | {pct(r['diff'])} "
            f"({pct(r['low'])}..{pct(r['high'])}) | {share} | {r['tokens']:,} | {r['seconds']} |"
        )
    print()
    induction = [task for task in tasks if humans[task] is not None]  # the methods compared
    for scope in [[task] for task in tasks] + ([induction] if len(induction) > 1 else []):
        for base, other, what in (
            ("paper", "ours", "ours - paper"),
            ("ours_centralized", "ours", "federated - centralized"),
            ("induce", "ours", "ours - induce"),
        ):
            if gap := compare(groups, scope, base, other):
                where = scope[0] if len(scope) == 1 else "all tasks"
                print(f"{where}: {what} {pct(gap.diff)} ({pct(gap.low)}..{pct(gap.high)}) pts")
    ours = [r for r in rows if r["method"] == "ours" and r["setting"] == "federated"]
    shares = [r["recovered"] for r in ours if r["recovered"] is not None]
    if shares:
        print(f"ours recovers {100 * sum(shares) / len(shares):.0f}% of the human gain on average")
    for r in ours:
        if r["human"] is not None and r["human"] - r["initial"] >= HEADROOM:
            print(
                f"{r['task']}: lower bound {pct(r['low'])} pts {'> 0' if r['low'] > 0 else '<= 0'}"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
