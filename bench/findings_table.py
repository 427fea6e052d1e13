"""The findings table (issue 31): what aggregation keeps of each client's learning, and how local
steps and the number of clients change the result, from the findings sweeps' finished runs.

    python bench/findings_table.py [--out docs/results/findings.json]

Aggregation: per run and task, `local` is the test accuracy of the last round's upload of the
client holding that task (at 6 clients, of its two holders on average; scored here with the run's
forward model, cached), `global` the last round's global prompt's (from the run); retention =
global / local; × longest upload: the global prompt's length over the round's longest upload's
(the goal for a merge: at most 1.5). Versus: two aggregators' global prompts on the same seeds and
examples (and `retain` against its first design, whose runs are archived, and against itself
checking on the server's own examples, OWN_CHECK, as is `select`), and the same for each local
steps or clients value against the first. Local steps and clients: the final prompt's test
accuracy and the run's tokens. Intervals are 95% over seeds and examples (the crossed bootstrap of
fedtextgrad.stats.pooled); retention's is over seeds only (t).
Each finished run's results.json is archived under docs/results/findings_runs/ (commit them): on
a new machine, `cp -r docs/results/findings_runs/. runs/` and the sweeps skip those runs."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from scipy import stats as scipy_stats

from fedtextgrad.config import ExperimentConfig
from fedtextgrad.federated.prepare import Engines, prepare_data
from fedtextgrad.stats import Paired, points, pooled
from fedtextgrad.sweep import SweepRun, load_sweep
from fedtextgrad.textgrad import evaluate

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "configs" / "sweeps" / "measured"
ARCHIVE = ROOT / "docs" / "results" / "findings_runs"
QUESTIONS = {  # question -> (sweep file, runs directory, swept key)
    "aggregation": (
        "findings_aggregation.toml",
        "findings_aggregation_1.5b",  # the 1.5B model answering (the sweep file says why)
        "federation.aggregation",
    ),
    "local_steps": ("findings_local_steps.toml", "findings_k", "train.local_steps"),
    "clients": ("findings_clients.toml", "findings_clients", "federation.clients"),
}


# `retain` checking merges on validation examples of the server's own, apart from the clients'
# (their gate chose the uploads on theirs, which flatters the uploads), in runs of its own:
#   fedtextgrad sweep configs/sweeps/measured/findings_aggregation.toml \
#       --out runs/findings_own_check --set eval.server_val_size=40 --only '*retain*'
OWN_CHECK = ("findings_aggregation.toml", "findings_own_check", ["eval.server_val_size=40"])


def finished(
    sweep_file: str, runs_dir: Path, overrides: list[str] | None = None
) -> list[tuple[SweepRun, dict]]:
    """The sweep's complete runs, each archived as it is read."""
    runs = []
    for run in load_sweep(SWEEPS / sweep_file, overrides).runs:
        if run.status(runs_dir) == "complete":
            path = runs_dir / run.name / "results.json"
            (ARCHIVE / runs_dir.name / run.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, ARCHIVE / runs_dir.name / run.name)
            runs.append((run, json.loads(path.read_text())))
    return runs


# The uploads' test scores, kept once measured: another machine's replies differ a little
# (batched decoding is not bit-reproducible), and scoring every upload again takes ~40 minutes.
UPLOAD_SCORES = ARCHIVE / "upload_scores.json"


async def upload_scores(run: SweepRun, results: dict) -> dict[str, list[float]]:
    """task -> the test scores of its clients' last uploads, example by example on average
    (client c holds task c mod tasks)."""
    config = run.config
    data = prepare_data(config)
    tasks = list(data.objective.tasks)
    uploads = {c["client"]: c["prompt"] for c in results["rounds"][-1]["clients"]}
    known = json.loads(UPLOAD_SCORES.read_text()) if UPLOAD_SCORES.exists() else {}
    keys = {c: _score_key(config, p, tasks[c % len(tasks)]) for c, p in uploads.items()}
    if missing := [c for c in sorted(uploads) if keys[c] not in known]:
        engines = Engines.open(config)
        try:
            for client in missing:
                task = tasks[client % len(tasks)]
                attempts = await evaluate(
                    engines.forward,
                    uploads[client],
                    [ex for ex in data.test if ex.task == task],
                    data.objective,
                    max_tokens=config.train.forward_max_tokens,
                    purpose="test",
                )
                known[keys[client]] = [a.score for a in attempts]
        finally:
            await engines.aclose()
        UPLOAD_SCORES.write_text(json.dumps(dict(sorted(known.items()))) + "\n")
    held: dict[str, list[list[float]]] = defaultdict(list)
    for client in sorted(uploads):
        held[tasks[client % len(tasks)]].append(known[keys[client]])
    # 6 clients: a task's two holders, example by example, on average
    return {
        task: [sum(s) / len(s) for s in zip(*lists, strict=True)] for task, lists in held.items()
    }


def _score_key(config: ExperimentConfig, prompt: str, task: str) -> str:
    """What an upload's test scores depend on."""
    what = [
        prompt,
        task,
        config.engines.forward,
        config.train.forward_max_tokens,
        config.eval.test_size,
    ]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]


def aggregator_of(run: SweepRun) -> str:
    """The run's aggregator, and where it checks merges on validation examples of its own."""
    own = run.config.eval.server_val_size
    name = run.config.federation.aggregation
    return f"{name}, own {own}" if own else name


def aggregation_rows(runs: list[tuple[SweepRun, dict]]) -> list[dict]:
    groups: dict[tuple, list] = defaultdict(list)
    for run, results in runs:
        groups[run.label["variant"], aggregator_of(run)].append((run, results))
    rows = []
    for (setting, aggregator), members in groups.items():
        per_task: dict[str, list] = defaultdict(list)  # task -> [(local scores, global scores)]
        retention: dict[str, list[float]] = defaultdict(list)
        for run, results in members:
            local = asyncio.run(upload_scores(run, results))
            last = results["final"]["last"]
            data = prepare_data(run.config)
            for task, scores in local.items():
                mine = [i for i, ex in enumerate(data.test) if ex.task == task]
                global_scores = [last["test_scores"][i] for i in mine]
                per_task[task].append((scores, global_scores))
                local_acc = sum(scores) / len(scores)
                if local_acc:  # a client that learned nothing has nothing to retain
                    retention[task].append(last["test_by_task"][task] / local_acc)
        for task, pairs in per_task.items():
            gap = pooled(pairs)
            rows.append(
                _row(
                    "aggregation",
                    setting,
                    aggregator,
                    aggregator,
                    task,
                    gap,
                    members,
                    retention=round(_mean(retention[task]), 3) if retention[task] else None,
                    retention_ci=_t_interval(retention[task]),
                    length_ratio=_mean([_length_ratio(r) for _, r in members]),
                )
            )
    return rows


VERSUS = [  # (aggregator, reference): the paper's third finding, then ours against the paper's
    ("uid_summarize", "summarize"),
    ("retain", "concat"),
    ("retain", "uid_summarize"),
    ("retain, own 40", "retain"),
    ("retain, own 40", "concat"),
    ("retain, own 40", "uid_summarize"),
    ("retain, own 40", "select, own 40"),  # the same check's data, the other design
]


# An aggregator's earlier design: its runs, archived by run name, against the current ones.
EARLIER = {"retain": ("retain v1", ARCHIVE / "findings_retain_v1")}


def versus_rows(runs: list[tuple[SweepRun, dict]]) -> list[dict]:
    """Each VERSUS pair of aggregators, then each EARLIER design against its successor, per
    setting."""
    by_run = {
        (run.label["variant"], aggregator_of(run), run.seed): (run, results)
        for run, results in runs
    }
    for (setting, aggregator, seed), (run, _) in list(by_run.items()):
        if aggregator in EARLIER:
            name, folder = EARLIER[aggregator]
            if (path := folder / run.name / "results.json").exists():
                by_run[setting, name, seed] = (run, json.loads(path.read_text()))
    rows = []
    for setting in sorted({key[0] for key in by_run}):
        for aggregator, reference in [*VERSUS, *((a, n) for a, (n, _) in EARLIER.items())]:
            rows += _paired(setting, aggregator, reference, by_run, _last)
    return rows


def factor_versus_rows(question: str, key: str, runs: list[tuple[SweepRun, dict]]) -> list[dict]:
    """Each value of a swept factor against its first (local steps 2 and 4 against 1)."""
    by_run = {(question, run.label[key], run.seed): (run, results) for run, results in runs}
    values = sorted({value for _, value, _ in by_run})
    return [
        row for value in values[1:] for row in _paired(question, value, values[0], by_run, _final)
    ]


def _last(results: dict) -> list[float]:
    """The last round's global prompt's test scores (what aggregation kept)."""
    return results["final"]["last"]["test_scores"]


def _final(results: dict) -> list[float]:
    """The run's result's test scores (the best prompt on validation)."""
    return results["final"]["test_scores"]


def _paired(
    setting: str,
    name: object,
    reference: object,
    by_run: dict,
    scores: Callable[[dict], list[float]],
) -> list[dict]:
    """`name`'s runs against `reference`'s on the same test examples (`scores` of each), per
    task and over all tasks (when several), paired by seed (those both have finished) and
    example. `local` holds the reference's accuracy, `global` the compared one's."""
    seeds = sorted(
        seed
        for (s, n, seed) in by_run
        if (s, n) == (setting, name) and (s, reference, seed) in by_run
    )
    pairs: dict[str, list] = defaultdict(list)
    for seed in seeds:
        ours, theirs = by_run[setting, name, seed], by_run[setting, reference, seed]
        tasks = [ex.task for ex in prepare_data(ours[0].config).test]
        everything = ["all"] if len(set(tasks)) > 1 else []
        mine, ref = scores(ours[1]), scores(theirs[1])
        for task in [*dict.fromkeys(tasks), *everything]:
            keep = [i for i, t in enumerate(tasks) if task in (t, "all")]
            pairs[task].append(([ref[i] for i in keep], [mine[i] for i in keep]))
    return [
        _row("versus", setting, str(name), reference, task, pooled(task_pairs), seeds=seeds)
        for task, task_pairs in pairs.items()
    ]


def _length_ratio(results: dict) -> float:
    """The last global prompt's length over its round's longest upload's (characters): the
    issue's goal for a merge is at most 1.5."""
    last = results["rounds"][-1]
    return last["prompt_chars"] / max(len(c["prompt"]) for c in last["clients"])


def factor_rows(question: str, key: str, runs: list[tuple[SweepRun, dict]]) -> list[dict]:
    groups: dict[object, list] = defaultdict(list)
    for run, results in runs:
        groups[run.label[key]].append((run, results))
    rows = []
    for value, members in groups.items():
        pairs = [(r["initial"]["test_scores"], r["final"]["test_scores"]) for _, r in members]
        gain = pooled(pairs)
        config = members[0][0].config
        rows.append(  # the interval: of the gain over the initial prompt
            _row(
                question,
                "homogeneous",
                config.federation.aggregation,
                value,
                config.task.name,
                gain,
                members,
                local=None,
            )
        )
    return rows


def _row(
    question: str,
    setting: str,
    aggregator: str,
    value: object,
    task: str,
    gap: Paired,
    members: Sequence[tuple[SweepRun, dict]] = (),
    **columns: object,
) -> dict:
    """A row of findings.json: the pooled difference (aggregation: global - local; versus:
    aggregator - reference; the other questions: final - initial) with its interval, and, where
    the row stands for runs (members), their prompts' length, cost and seeds."""
    return {
        "question": question,
        "setting": setting,
        "aggregator": aggregator,
        "value": value,
        "task": task,
        "local": round(gap.before, 4),
        "global": round(gap.after, 4),
        "retention": None,
        "length_ratio": None,
        "diff": round(gap.diff, 4),
        "low": round(gap.low, 4),
        "high": round(gap.high, 4),
        "prompt_tokens": _mean([r["rounds"][-1]["prompt_tokens"] for _, r in members]) or None,
        "tokens": _mean([r["usage"]["tokens_used"] for _, r in members]) or None,
        "seeds": [run.seed for run, _ in members],
        "n": gap.n,
    } | columns


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 3) if values else 0.0


def _t_interval(values: list[float]) -> list[float] | None:
    if len(values) < 2:
        return None
    if len(set(values)) == 1:  # no spread: the t interval is NaN, which JSON cannot hold
        return [values[0], values[0]]
    low, high = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=_mean(values), scale=scipy_stats.sem(values)
    )
    return [round(low, 3), round(high, 3)]


def markdown(rows: list[dict]) -> str:
    """The rows as tables: each question's, then the aggregators against each other. Δ, in
    points: global - local (aggregation), final - initial (local steps, clients), aggregator -
    reference (versus)."""
    lines = [
        "| question | setting | value | task | local | global | Δ (95% CI) | retention | "
        "prompt tokens | × longest upload | tokens/run | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["question"] != "versus"):
        local = "" if r["local"] is None else f"{r['local']:.2f}"
        retention = "" if r["retention"] is None else f"{r['retention']:.2f}"
        ratio = "" if r["length_ratio"] is None else f"{r['length_ratio']:.2f}"
        lines.append(
            f"| {r['question']} | {r['setting']} | {r['value']} | {r['task']} | {local} | "
            f"{r['global']:.2f} | {_gap(r)} | {retention} | "
            f"{r['prompt_tokens']:.0f} | {ratio} | {r['tokens']:,.0f} | {len(r['seeds'])} |"
        )
    lines += [
        "",
        "| setting | compared | reference | task | reference's | compared's | Δ (95% CI) | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["question"] == "versus"):
        lines.append(
            f"| {r['setting']} | {r['aggregator']} | {r['value']} | {r['task']} | "
            f"{r['local']:.2f} | {r['global']:.2f} | {_gap(r)} | {len(r['seeds'])} |"
        )
    return "\n".join(lines)


def _gap(row: dict) -> str:
    return f"{points(row['diff'])} ({points(row['low'])}..{points(row['high'])})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "findings.json")
    args = parser.parse_args()
    rows = []
    for question, (sweep_file, runs_dir, key) in QUESTIONS.items():
        runs = finished(sweep_file, ROOT / "runs" / runs_dir)
        if not runs:
            print(f"{question}: no finished runs in runs/{runs_dir}")
            continue
        if question == "aggregation":
            sweep, folder, overrides = OWN_CHECK
            runs += finished(sweep, ROOT / "runs" / folder, overrides)
            rows += aggregation_rows(runs) + versus_rows(runs)
        else:
            rows += factor_rows(question, key, runs) + factor_versus_rows(question, key, runs)
    print(markdown(rows))
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
