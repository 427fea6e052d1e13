"""Finding runs on disk, grouping them into studies and settings, and the numbers per setting."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy.stats import t as student_t

from fedtextgrad.artifacts import MANIFEST
from fedtextgrad.config import flatten
from fedtextgrad.errors import ConfigError, RunStateError
from fedtextgrad.federated.store import read_results
from fedtextgrad.record import Final
from fedtextgrad.record import Run as RunRecord
from fedtextgrad.stats import Paired, points, pooled

NOTE = (
    "Mean ± the half-width of its 95% t-interval over the seeds of completed runs. Test Δ: the "
    "final prompt minus the initial one on the same test examples, pooled over seeds (each "
    "example's difference averaged), with its 95% bootstrap interval in points. Tokens used: "
    "prompt + completion tokens of "
    "every LLM call, including those the response cache (shared by the runs of a sweep) "
    "answered for free, so that runs compare fairly whatever order they ran in."
)
_IGNORED_KEYS = ("seed", "llm.")  # never a "setting": seeds are averaged, llm.* is plumbing


@dataclass
class Run:
    dir: Path
    record: RunRecord
    label: dict[str, Any]
    seed: int

    @property
    def complete(self) -> bool:
        return self.record.status == "complete"

    @property
    def final(self) -> Final:
        """The result of a complete run."""
        assert self.record.final is not None, f"{self.dir}: the run is not complete"
        return self.record.final

    def val_curve(self) -> list[float]:
        """Validation accuracy after rounds 0 (the initial prompt), 1, 2, ..."""
        initial = self.record.initial
        head = [initial.val_accuracy] if initial else []
        return head + [r.val_accuracy for r in self.record.rounds]

    def prompt_tokens_curve(self) -> list[int]:
        initial = self.record.initial
        head = [initial.prompt_tokens] if initial else []
        return head + [r.prompt_tokens for r in self.record.rounds]

    def cumulative_tokens(self) -> list[int]:
        """LLM tokens used in rounds 1..t (training, aggregation, validation), t = 0, 1, ..."""
        curve = [0]
        for entry in self.record.rounds:
            curve.append(curve[-1] + entry.usage.tokens_used)
        return curve

    def final_uid(self) -> dict | None:
        rounds, initial = self.record.rounds, self.record.initial
        return rounds[-1].uid if rounds else initial.uid if initial else None


@dataclass
class Setting:
    """The runs of one grid point, one per seed."""

    label: dict[str, Any]
    runs: list[Run] = field(default_factory=list)

    @property
    def title(self) -> str:
        return ", ".join(f"{_short(k)}={_fmt_value(v)}" for k, v in self.label.items()) or "run"

    def complete_runs(self) -> list[Run]:
        return [r for r in self.runs if r.complete]

    def stat(self, value) -> tuple[float, float, int] | None:
        """(mean, half-width of the 95% t-interval, n) of value(run) over complete runs; None
        when no run has it."""
        values = [v for r in self.complete_runs() if (v := value(r)) is not None]
        if not values:
            return None
        n = len(values)
        half = student_t.ppf(0.975, n - 1) * statistics.stdev(values) / n**0.5 if n > 1 else 0.0
        return statistics.fmean(values), float(half), n

    def paired(self) -> Paired | None:
        """Final vs initial prompt on the same test examples, pooled over the seeds; None when
        the runs were tested on different examples (they are not one sample)."""
        runs = self.complete_runs()
        if len({r.record.initial.test_examples for r in runs if r.record.initial}) > 1:
            return None
        pairs = [
            (r.record.initial.test_scores, r.final.test_scores) for r in runs if r.record.initial
        ]
        try:
            return pooled(pairs) if pairs else None
        except ValueError:  # runs without the digest, of other sizes
            return None


@dataclass
class Study:
    """The runs of one sweep (or of loose run directories), grouped into settings."""

    name: str
    question: str
    keys: list[str]
    settings: list[Setting]
    missing: list[str] = field(default_factory=list)  # listed in the manifest, never run

    @property
    def runs(self) -> list[Run]:
        return [r for s in self.settings for r in s.runs]

    @property
    def has_uid(self) -> bool:
        return any(r.final_uid() for r in self.runs if r.complete)


def load_studies(paths: list[str | Path]) -> list[Study]:
    """Studies from sweep directories (with sweep.json), run directories, or folders of them."""
    sweep_dirs: list[Path] = []
    loose: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise RunStateError(f"not a directory: {path} (give sweep or run directories)")
        found = sorted(p.parent.resolve() for p in path.rglob(MANIFEST))
        sweep_dirs += [d for d in found if d not in sweep_dirs]
        for results in sorted(path.rglob("results.json")):
            run_dir = results.parent.resolve()
            if run_dir not in loose and not any(d in run_dir.parents for d in found):
                loose.append(run_dir)
    loose = [d for d in loose if not any(s in d.parents for s in sweep_dirs)]
    studies = [_sweep_study(d) for d in sweep_dirs]
    if loose:
        studies.append(_loose_study(loose))
    names: dict[str, int] = {}
    for study in studies:  # two sweeps of one name must not overwrite each other's plots
        names[study.name] = names.get(study.name, 0) + 1
        if names[study.name] > 1:
            study.name = f"{study.name}-{names[study.name]}"
    if not studies:
        raise ConfigError(
            f"no runs found under {', '.join(map(str, paths))}: give directories that hold "
            "results.json files (run or sweep output)"
        )
    return studies


def _read(run_dir: Path) -> RunRecord | None:
    path = run_dir / "results.json"
    return read_results(path, "remove it or rerun that run") if path.exists() else None


def _sweep_study(sweep_dir: Path) -> Study:
    try:
        manifest = json.loads((sweep_dir / MANIFEST).read_text())
    except json.JSONDecodeError:
        raise RunStateError(
            f"{sweep_dir / MANIFEST} is not valid JSON: run the sweep again to rewrite it"
        ) from None
    settings: dict[str, Setting] = {}
    missing = []
    for entry in manifest["runs"]:
        key = json.dumps(entry["label"], sort_keys=True)
        setting = settings.setdefault(key, Setting(entry["label"]))
        results = _read(sweep_dir / entry["dir"])
        if results is None:
            missing.append(entry["dir"])
            continue
        setting.runs.append(Run(sweep_dir / entry["dir"], results, entry["label"], entry["seed"]))
    return Study(
        manifest["name"],
        manifest.get("question", ""),
        manifest["keys"],
        list(settings.values()),
        missing,
    )


def _loose_study(run_dirs: list[Path]) -> Study:
    loaded = [(d, r) for d in run_dirs if (r := _read(d)) is not None]
    flats = [flatten(r.config) for _, r in loaded]
    all_keys = sorted({k for f in flats for k in f})
    keys = [
        k
        for k in all_keys
        if not k.startswith(_IGNORED_KEYS)
        and len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1
    ]
    settings: dict[str, Setting] = {}
    for (run_dir, results), flat in zip(loaded, flats, strict=True):
        label = {k: flat.get(k) for k in keys}
        setting = settings.setdefault(json.dumps(label, sort_keys=True), Setting(label))
        setting.runs.append(Run(run_dir, results, label, flat.get("seed", 0)))
    ordered = sorted(settings.values(), key=lambda s: json.dumps(s.label, sort_keys=True))
    return Study("runs", "", keys, ordered)


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _fmt_value(value: Any) -> str:
    return "+".join(map(str, value)) if isinstance(value, list) else str(value)


# -- the table ---------------------------------------------------------------------------------

# (column title, value of a run, format)
METRICS: list[tuple[str, Any, str]] = [
    ("initial test acc", lambda r: r.record.initial.test_accuracy, "{:.3f}"),
    ("final test acc", lambda r: r.final.test_accuracy, "{:.3f}"),
    ("last-round test acc", lambda r: r.final.last.test_accuracy, "{:.3f}"),
    ("final prompt tokens", lambda r: r.prompt_tokens_curve()[-1], "{:.0f}"),
    ("tokens used (k)", lambda r: r.record.usage.tokens_used / 1000, "{:.1f}"),
    ("LLM calls", lambda r: r.record.usage.calls, "{:.0f}"),
    ("minutes", lambda r: r.record.wall_seconds / 60, "{:.1f}"),
]
UID_METRICS: list[tuple[str, Any, str]] = [
    ("surprisal mean (bits)", lambda r: (r.final_uid() or {}).get("mean"), "{:.2f}"),
    ("surprisal var", lambda r: (r.final_uid() or {}).get("variance"), "{:.1f}"),
    ("sentence var", lambda r: (r.final_uid() or {}).get("sentence_variance"), "{:.2f}"),
]


def study_metrics(study: Study) -> list[tuple[str, Any, str]]:
    """The table's columns: the common ones, the final test accuracy per task when the study
    has several tasks (heterogeneous setting), and the surprisal statistics when recorded."""
    tasks = sorted({t for r in study.runs if r.complete for t in r.final.test_by_task})
    per_task = [
        (f"test acc {task}", _task_accuracy(task), "{:.3f}") for task in tasks if len(tasks) > 1
    ]
    return METRICS[:2] + per_task + METRICS[2:] + (UID_METRICS if study.has_uid else [])


def _task_accuracy(task: str):
    return lambda r: r.final.test_by_task.get(task)


def table(study: Study) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per setting, mean ± 95% t-interval over the seeds that completed."""
    metrics = study_metrics(study)
    header = (
        [_short(k) for k in study.keys] + ["seeds", "test Δ (95% CI)"] + [m[0] for m in metrics]
    )
    rows = []
    for setting in study.settings:
        row = [_fmt_value(setting.label.get(k)) for k in study.keys]
        done, total = len(setting.complete_runs()), len(setting.runs)
        row.append(str(done) if done == total else f"{done} of {total}")
        diff = setting.paired()
        row.append(
            "–"
            if diff is None
            else f"{points(diff.diff)} ({points(diff.low)}..{points(diff.high)})"
        )
        for _, value, fmt in metrics:
            stat = setting.stat(value)
            if stat is None:
                row.append("–")
            else:
                mean, std, n = stat
                row.append(fmt.format(mean) + (f" ± {fmt.format(std)}" if n > 1 else ""))
        rows.append(row)
    return header, rows


def summary(study: Study) -> dict:
    """The study as JSON: per setting, mean/std/n of every metric and the final prompts."""
    metrics = study_metrics(study)
    settings = []
    for setting in study.settings:
        stats = {}
        for title, value, _ in metrics:
            stat = setting.stat(value)
            stats[title] = (
                None if stat is None else {"mean": stat[0], "ci95": stat[1], "n": stat[2]}
            )
        diff = setting.paired()
        settings.append(
            {
                "label": setting.label,
                "runs": [_run_summary(r) for r in setting.runs],
                "metrics": stats,
                "paired": None if diff is None else diff.to_dict(),
            }
        )
    return {
        "name": study.name,
        "question": study.question,
        "keys": study.keys,
        "settings": settings,
    }


def _run_summary(run: Run) -> dict:
    final = run.record.final
    return {
        "dir": run.dir.name,
        "seed": run.seed,
        "status": run.record.status,
        "val_curve": run.val_curve(),
        "final_test_accuracy": final.test_accuracy if final else None,
        "final_test_by_task": final.test_by_task if final else None,
        "final_prompt": final.prompt if final else None,
    }
