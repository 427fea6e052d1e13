"""Sweeps: a base config × a grid of overrides × seeds, run concurrently in one process.

A sweep file (TOML):

    base = "base/homogeneous.toml"      # relative to the sweep file
    question = "How many local steps?"  # shown in the report
    seeds = [0, 1]
    concurrency = 2                     # runs at once (they share the engines)

    [set]                               # fixed overrides for every run
    "federation.rounds" = 3

    [grid]                              # every combination of these values
    "train.local_steps" = [1, 2, 3, 5]

    [variants.centralized]              # optional named override sets, crossed with the grid
    "federation.clients" = 1

Each run gets its own directory under the sweep's --out; a run whose results.json says
"complete" is skipped and an interrupted one resumes, so re-running a sweep is cheap. Runs share
engines (a model loads once; its concurrency limit spans all runs) and the response cache."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fedtextgrad.artifacts import MANIFEST, refuse_foreign_report, write_atomic
from fedtextgrad.config import (
    ExperimentConfig,
    describe,
    flatten,
    load_config,
    read_toml,
    same_experiment,
    set_dotted,
)
from fedtextgrad.errors import ConfigError, FedTextGradError
from fedtextgrad.federated.prepare import Engines, prepare_data
from fedtextgrad.llm import LLM, ResponseCache, open_engine
from fedtextgrad.redaction import MASK, is_secret_key, mask_settings, redact
from fedtextgrad.tracking import TrackOption, TrackUriOption


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="the base experiment config, relative to the sweep file")
    name: str | None = Field(None, description="default: the sweep file's name")
    question: str = Field("", description="what the sweep answers (shown in the report)")
    seeds: list[int] = Field([0], min_length=1)
    concurrency: int = Field(2, ge=1, description="runs in flight at once")
    set: dict[str, Any] = Field({}, description="fixed overrides, dotted keys")
    grid: dict[str, list[Any]] = Field({}, description="dotted key -> values to try")
    variants: dict[str, dict[str, Any]] = Field({}, description="name -> overrides")

    @field_validator("set", mode="before")
    @classmethod
    def _flat_set(cls, value: Any) -> Any:
        return flatten(value) if isinstance(value, dict) else value

    @field_validator("grid", mode="before")
    @classmethod
    def _flat_grid(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        flat = flatten(value)
        for key, values in flat.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid key '{key}' needs a non-empty list of values")
        if "seed" in flat:
            raise ValueError("sweep seeds with `seeds = [...]`, not in [grid]")
        for key, values in flat.items():
            if len({json.dumps(v, sort_keys=True) for v in values}) < len(values):
                raise ValueError(f"grid key '{key}' repeats a value")
        return flat

    @field_validator("variants", mode="before")
    @classmethod
    def _flat_variants(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        flat = {}
        for name, overrides in value.items():
            if not isinstance(overrides, dict):
                raise ValueError(f"variant '{name}' must be a table of overrides")
            flat[name] = flatten(overrides)
        return flat

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("seeds repeat a value")
        return value


@dataclass
class SweepRun:
    """One point of the grid with one seed."""

    name: str  # the run directory's name
    label: dict[str, Any]  # the swept values (variant first), without the seed
    seed: int
    overrides: dict[str, Any]
    config: ExperimentConfig

    def status(self, out_dir: Path) -> str:
        """One of: new, running (interrupted or in progress), complete, or stale (complete, but
        made with another config than the sweep file now gives, or other task data)."""
        path = out_dir / self.name / "results.json"
        if not path.exists():
            return "new"
        try:
            results = json.loads(path.read_text())
        except (ValueError, RecursionError):  # damaged: resuming it says so, in one line
            return "running"
        if not isinstance(results, dict) or results.get("status") != "complete":
            return "running"
        stored = results.get("config")
        if not isinstance(stored, dict) or not same_experiment(stored, self.config):
            return "stale"
        return "complete" if self._same_data(results.get("data_fingerprint")) else "stale"

    def _same_data(self, fingerprint: object) -> bool:
        """Whether a complete run used the task data there is now (a task file may have been
        edited since); runs from before data fingerprints are trusted."""
        return fingerprint is None or fingerprint == prepare_data(self.config).fingerprint()


@dataclass
class Sweep:
    name: str
    spec: SweepSpec
    path: Path
    runs: list[SweepRun] = field(default_factory=list)  # all of them: the manifest lists each
    only: list[str] = field(default_factory=list)  # name patterns of the runs to run now

    @property
    def chosen(self) -> list[SweepRun]:
        """The runs `only` picks (all, without it): a chunk of a long sweep."""
        return [r for r in self.runs if not self.only or any(fnmatch(r.name, p) for p in self.only)]

    def manifest(self, out_dir: Path) -> dict:
        spec = self.spec.model_dump()
        spec["set"] = mask_settings(spec["set"])
        spec["grid"] = {
            k: [MASK] * len(v) if is_secret_key(k) else v for k, v in spec["grid"].items()
        }
        spec["variants"] = {name: mask_settings(v) for name, v in spec["variants"].items()}
        return {
            "name": self.name,
            "question": self.spec.question,
            "sweep_file": str(self.path),
            "spec": spec,
            "keys": list(self.runs[0].label) if self.runs else [],
            "runs": [
                {
                    "dir": r.name,
                    "label": r.label,
                    "seed": r.seed,
                    "overrides": mask_settings(r.overrides),
                }
                for r in self.runs
            ],
        }


def load_sweep(
    path: str | Path, overrides: list[str] | None = None, only: list[str] | None = None
) -> Sweep:
    """Read and validate a sweep file and every run config it expands to; `only` (glob patterns
    of run names) chooses the runs to run now."""
    path = Path(path)
    raw = read_toml(path, "sweep")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"invalid sweep {path}: {describe(error)}") from None
    base_path = (path.parent / spec.base).resolve()
    if not base_path.is_file():
        raise ConfigError(
            f"{path}: base config not found: {base_path} (base is relative to the sweep file)"
        )
    base = read_toml(base_path, "config")
    sweep = Sweep(spec.name or path.stem, spec, path)
    variants = spec.variants or {"": {}}
    keys = list(spec.grid)
    for variant, values in itertools.product(variants, itertools.product(*spec.grid.values())):
        point = dict(zip(keys, values, strict=True))
        label = ({"variant": variant} if variant else {}) | _shown(spec.grid, point)
        for seed in spec.seeds:
            settings = spec.set | variants[variant] | point | {"seed": seed}
            try:
                config = load_config(_apply(base, settings), overrides)
            except FedTextGradError as error:
                raise type(error)(f"{path}: run {_run_name(label, seed)}: {error}") from None
            sweep.runs.append(SweepRun(_run_name(label, seed), label, seed, settings, config))
    _unique_names(sweep.runs)
    sweep.only = list(only or [])
    if not sweep.chosen:
        raise ConfigError(f"--only {' '.join(sweep.only)} matches no run of {path}")
    return sweep


def _unique_names(runs: list[SweepRun]) -> None:
    """Values that slug alike ("Be brief." and "Be, brief.", long ones cut alike, or names that
    differ in case only: one directory on macOS and Windows) get a hash of their label added, so
    that no two runs share a directory."""
    counts = Counter(run.name.lower() for run in runs)
    for run in runs:
        if counts[run.name.lower()] > 1:
            digest = hashlib.sha256(json.dumps(run.label, sort_keys=True).encode()).hexdigest()
            run.name = f"{run.name}__{digest[:8]}"


def _apply(base: dict, settings: dict[str, Any]) -> dict:
    data = json.loads(json.dumps(base))  # a deep copy
    for key, value in settings.items():
        set_dotted(data, key, value)
    return data


def _shown(grid: dict[str, list[Any]], point: dict[str, Any]) -> dict[str, Any]:
    """The point as labels and run names show it: a secret value by its place in the grid."""
    return {
        key: f"secret-{grid[key].index(value) + 1}" if is_secret_key(key) else value
        for key, value in point.items()
    }


_SLUG_CHARS = 48  # per value: a run's directory name stays under the filesystems' 255 bytes


def _slug(value: Any) -> str:
    text = "+".join(map(str, value)) if isinstance(value, list) else str(value)
    return re.sub(r"[^A-Za-z0-9.+_-]+", "-", text).strip("-")[:_SLUG_CHARS] or "x"


def _run_name(label: dict[str, Any], seed: int) -> str:
    parts = [
        _slug(value) if key == "variant" else f"{key.rsplit('.', 1)[-1]}={_slug(value)}"
        for key, value in label.items()
    ]
    return "__".join([*parts, f"seed={seed}"])


class EnginePool:
    """Engines shared by every run of a sweep: one LLM per (spec, settings), one cache per
    cache directory, so a model loads once and its concurrency limit spans all runs."""

    def __init__(self) -> None:
        self._llms: dict[tuple[str, str, str | None], LLM] = {}
        self._caches: dict[str | None, ResponseCache] = {}

    def engines(self, config: ExperimentConfig) -> Engines:
        settings = config.llm
        cache = None
        if settings.cache:
            if settings.cache_dir not in self._caches:
                self._caches[settings.cache_dir] = ResponseCache(settings.cache_dir)
            cache = self._caches[settings.cache_dir]
        roles = {}
        key_value = settings.api_key.get_secret_value() if settings.api_key else None
        for role, spec in config.engines.resolved.items():
            key = (spec, settings.model_dump_json(), key_value)  # the dump masks the key
            if key not in self._llms:
                self._llms[key] = open_engine(spec, settings, cache=cache)
            roles[role] = self._llms[key]
        return Engines(**roles)

    async def aclose(self) -> None:
        for llm in self._llms.values():
            await llm.aclose()


@dataclass
class SweepOutcome:
    skipped: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    budget: list[str] = field(default_factory=list)  # stopped at llm.budget_tokens


RunEventSink = Callable[[str, dict], None]


async def run_sweep(
    sweep: Sweep,
    out_dir: str | Path,
    *,
    concurrency: int | None = None,
    on_event: RunEventSink | None = None,
    pool: EnginePool | None = None,
) -> SweepOutcome:
    """Run every incomplete run of the sweep (at most `concurrency` at once) under `out_dir`.
    Pass `pool` to supply the engines yourself (it is left open)."""
    from fedtextgrad.experiment import run_async

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / MANIFEST, json.dumps(sweep.manifest(out_dir), indent=2) + "\n")
    outcome = SweepOutcome()
    slots = asyncio.Semaphore(concurrency or sweep.spec.concurrency)
    own_pool = pool is None
    pool = pool or EnginePool()

    async def one(run: SweepRun) -> None:
        async with slots:
            sink = (lambda event: on_event(run.name, event)) if on_event else None
            try:
                results = await run_async(
                    run.config,
                    out_dir / run.name,
                    resume=True,
                    engines=pool.engines(run.config),
                    on_event=sink,
                )
            except Exception as error:  # one failed run must not stop the others
                outcome.failed[run.name] = f"{type(error).__name__}: {error}"
                if on_event:
                    on_event(run.name, {"event": "failed", "error": outcome.failed[run.name]})
                return
            done = outcome.budget if results.data["status"] == "budget" else outcome.completed
            done.append(run.name)

    try:
        pending = []
        for run in sweep.chosen:
            status = run.status(out_dir)
            if status == "complete":
                outcome.skipped.append(run.name)
            elif status == "stale":
                outcome.failed[run.name] = (
                    f"{out_dir / run.name} holds a run of another config or task data: remove "
                    "it, or use another --out"
                )
            else:
                pending.append(run)
        await asyncio.gather(*(one(run) for run in pending))
    finally:
        if own_pool:
            await pool.aclose()
    return outcome


def command(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep file (TOML): base, [grid], seeds.")],
    out: Annotated[Path | None, typer.Option("--out", help="Sweep directory.")] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", min=1, help="Runs at once (default: the file's).")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key in every run: --set eval.test_size=6"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the runs and their status; run nothing.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Only the runs whose name matches: --only 'paper__*seed=0'"),
    ] = None,
    track: TrackOption = None,
    track_uri: TrackUriOption = None,
) -> None:
    """Run a grid of experiments × seeds, skipping complete runs and resuming interrupted ones;
    then write a report into OUT/report."""
    sweep = load_sweep(sweep_file, overrides, only)
    out = out or Path("runs") / sweep.name
    # Refused now rather than after the runs: the report must not overwrite someone's files.
    refuse_foreign_report(out / "report")
    if track:
        from fedtextgrad.tracking import check_tracker

        check_tracker(track)
    if dry_run:
        for run in sweep.chosen:
            typer.echo(f"{run.status(out):<9} {run.name}")
        return

    def show(name: str, event: dict) -> None:
        kind = event["event"]
        if kind == "round":
            typer.echo(f"{name}: round {event['round']} val {event['val_accuracy']:.3f}", err=True)
        elif kind == "done":
            typer.echo(f"{name}: done, test {event['test_accuracy']:.3f}", err=True)
        elif kind == "failed":
            typer.echo(f"{name}: FAILED {redact(event['error'])}", err=True)

    outcome = asyncio.run(run_sweep(sweep, out, concurrency=jobs, on_event=show))
    typer.echo(
        f"{len(sweep.chosen)} runs: {len(outcome.completed)} ran, {len(outcome.skipped)} skipped "
        f"(already complete), {len(outcome.failed)} failed"
        + (f", {len(outcome.budget)} stopped at the token budget" if outcome.budget else "")
    )
    from fedtextgrad.report import write_report

    report_dir = write_report([out], out / "report")
    typer.echo(f"report: {report_dir / 'index.html'}")
    if track:
        from fedtextgrad.tracking import log_sweep

        done = [out / run.name for run in sweep.chosen if run.status(out) == "complete"]
        parent = log_sweep(out, done, track_uri)
        typer.echo(f"tracked: MLflow run {parent} (a child per finished run)")
    if outcome.failed:
        raise FedTextGradError(
            f"{len(outcome.failed)} run(s) failed (first: {'; '.join(next(iter(outcome.failed.items())))}); "
            "fix the cause and run the sweep again: complete runs are skipped"
        )
