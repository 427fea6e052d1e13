"""Shared pieces of the benchmarks: the latency server as a subprocess, an instrumented
experiment run in a child process (clean peak RSS), and the critical path of a run's call graph.

The child entry point is `python bench/benchlib.py SPEC.json`; the benchmarks call it for you.
"""

from __future__ import annotations

import asyncio
import cProfile
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

# -- machine and process figures ----------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


# -- the latency server -------------------------------------------------------------------------


class LatencyServerProcess:
    """bench/latency_server.py in a subprocess, with its bookkeeping endpoints."""

    def __init__(self, args: list[str]):
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "latency_server.py"), "--port", "0", *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("listening on "):
            self.close()
            raise RuntimeError(f"the latency server did not start: {line!r}")
        self.url = line.split()[-1]
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def stats(self) -> dict:
        return self.http.get("/bench/stats").json()

    def log(self) -> list[dict]:
        return self.http.get("/bench/log").json()

    def reset(self) -> None:
        self.http.post("/bench/reset").raise_for_status()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if hasattr(self, "http"):
            self.http.close()


@contextmanager
def latency_server(
    *,
    fixed: float,
    per_token: float,
    jitter: float = 0.0,
    answers: Path | None = None,
    tokens: str = "",
    slots: int | None = None,
    capacity: int | None = None,
) -> Iterator[LatencyServerProcess]:
    args = ["--fixed", str(fixed), "--per-token", str(per_token), "--jitter", str(jitter)]
    if answers:
        args += ["--answers", str(answers)]
    if tokens:
        args += ["--tokens", tokens]
    if slots:
        args += ["--slots", str(slots)]
    if capacity:
        args += ["--capacity", str(capacity)]
    server = LatencyServerProcess(args)
    try:
        yield server
    finally:
        server.close()


def write_answers(config: dict, path: Path) -> Path:
    """Every question of the experiment with its target, so the server can answer some right."""
    from fedtextgrad.config import load_config
    from fedtextgrad.federated import prepare_data

    data = prepare_data(load_config(config))
    examples = [*data.val, *data.test, *(ex for part in data.client_train for ex in part)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({ex.input: ex.target for ex in examples}))
    return path


# -- experiment configs -------------------------------------------------------------------------


def experiment_config(
    base_url: str,
    *,
    clients: int,
    rounds: int,
    steps: int,
    batch: int,
    val: int,
    test: int,
    concurrency: int | None,
    train_size: int | None = None,
    tasks: Sequence[str] = ("bbh_object_counting",),
    aggregation: str = "uid_summarize",
) -> dict:
    """The benchmark experiment against the latency server: cache off, one engine for all roles.
    Several tasks make it heterogeneous: one task per client."""
    task: dict = {"name": tasks[0]} if len(tasks) == 1 else {"names": list(tasks)}
    federation = {"clients": clients, "rounds": rounds, "aggregation": aggregation}
    if len(tasks) > 1:
        federation["partition"] = "by_task"
    return {
        "seed": 0,
        "engines": {"forward": "openai:bench"},
        "task": task | {"train_size": train_size},
        "train": {"batch_size": batch, "local_steps": steps, "gate": "batch"},
        "federation": federation,
        "eval": {"val_size": val, "test_size": test},
        "llm": {
            "base_url": f"{base_url}/v1",
            "api_key": "bench",
            "cache": False,
            "concurrency": concurrency,
        },
    }


# -- the instrumented run (child process) -------------------------------------------------------

# Where in the experiment a call is made; sent to the latency server as the x-bench-tag header.
TAG: ContextVar[dict | None] = ContextVar("bench_tag", default=None)


def _tagged(method: Callable, make_tag: Callable[..., dict]) -> Callable:
    async def wrapper(*args, **kwargs):
        token = TAG.set({**(TAG.get() or {}), **make_tag(*args, **kwargs)})
        try:
            return await method(*args, **kwargs)
        finally:
            TAG.reset(token)

    return wrapper


async def _add_tag_header(request) -> None:
    request.headers["x-bench-tag"] = json.dumps(TAG.get() or {}, separators=(",", ":"))


def tag_purposes(llm) -> None:
    """Add each call's purpose (forward, feedback, update, ...) to its tag."""
    llm.chat = _tagged(llm.chat, lambda *a, purpose, **k: {"purpose": purpose})


async def instrument_engine(llm) -> None:
    """Send every request's tag to the server in a header (OpenAI backends)."""
    import openai

    tag_purposes(llm)
    old = llm.backend.client
    llm.backend.client = old.copy(
        http_client=openai.DefaultAsyncHttpxClient(event_hooks={"request": [_add_tag_header]})
    )
    await old.close()


class RecordingBackend:
    """A backend wrapper that logs each call as it reaches the engine (after the concurrency
    limit): start, end, tokens and tag, in the latency server's log format."""

    def __init__(self, inner):
        self.inner = inner
        self.identity = inner.identity
        self.log: list[dict] = []

    async def chat(self, messages, **kwargs):
        from latency_server import guess_purpose

        start = time.time()
        completion = await self.inner.chat(messages, **kwargs)
        self.log.append(
            {
                "arrival": start,
                "start": start,
                "end": time.time(),
                "purpose": guess_purpose(messages),
                "tag": json.dumps(TAG.get() or {}),
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
            }
        )
        return completion

    def __getattr__(self, name):
        return getattr(self.inner, name)


def instrument_classes(timing: dict) -> None:
    """Tag calls with where they are made, and time `Server.run`. Patches the classes: the
    child process exists for this one run, and every runtime and trainer subclass is covered."""
    from fedtextgrad.federated import Client, Server
    from fedtextgrad.textgrad import LocalTrainer, step

    Server._initial = _tagged(Server._initial, lambda *a, **k: {"phase": "initial"})
    Server._final = _tagged(Server._final, lambda *a, **k: {"phase": "final"})
    Server.round = _tagged(Server.round, lambda _, n, *a, **k: {"phase": "round", "round": n})
    Client.run_round = _tagged(Client.run_round, lambda client, *a, **k: {"client": client.id})
    LocalTrainer.step = _tagged(LocalTrainer.step, lambda _, p, b, m, number: {"step": number})
    rewrites = itertools.count()  # the candidates of a step are rewritten side by side
    step.rewrite = _tagged(step.rewrite, lambda *a, **k: {"rewrite": next(rewrites)})
    run = Server.run

    async def timed_run(self, *args, **kwargs):
        timing["rss_before_run_mb"] = current_rss_mb()
        started, cpu = time.perf_counter(), cpu_seconds()
        try:
            return await run(self, *args, **kwargs)
        finally:
            timing["wall_seconds"] = time.perf_counter() - started
            timing["cpu_seconds"] = cpu_seconds() - cpu
            timing["peak_rss_in_run_mb"] = peak_rss_mb()  # before the report (matplotlib)

    Server.run = timed_run


async def run_experiment(config_data: dict, out_dir: str) -> dict:
    """`fedtextgrad.experiment.run_async` with every call tagged; the figures of `Server.run`."""
    from fedtextgrad.config import load_config
    from fedtextgrad.experiment import run_async
    from fedtextgrad.federated import Engines

    config = load_config(config_data)
    timing: dict = {}
    instrument_classes(timing)
    engines = Engines.open(config)
    for llm in engines.distinct():
        await instrument_engine(llm)
    try:
        results = (await run_async(config, out_dir, engines=engines)).data
    finally:
        await engines.aclose()
    usage = results["usage"]
    return {
        **timing,
        "peak_rss_mb": peak_rss_mb(),
        "round_seconds": [r["seconds"] for r in results["rounds"]],
        "calls": usage["calls"],
        "completion_tokens": usage["completion_tokens"],
        "initial_test_accuracy": results["initial"]["test_accuracy"],
        "final_test_accuracy": results["final"]["test_accuracy"],
        "usage_by_purpose": {p: c["calls"] for p, c in usage["by_purpose"].items()},
    }


def run_in_child(config_data: dict, out_dir: Path) -> dict:
    """Run the experiment in a fresh Python process and return its figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = out_dir / "bench_spec.json"
    result = out_dir / "bench_result.json"
    spec.write_text(json.dumps({"config": config_data, "out_dir": str(out_dir / "run")}))
    env = {k: v for k, v in os.environ.items() if k != "FEDTEXTGRAD_DATA"}  # generated data
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(spec), str(result)], check=True, env=env
    )
    return json.loads(result.read_text())


# -- the critical path --------------------------------------------------------------------------

# Within a step the phases run one after another, and so do a round's after its clients (merge
# the uploads, score select's candidates, validate). Calls inside a phase run side by side,
# except those of one chain: a rewrite's retry follows its first attempt (the calls of one
# `rewrite`, tagged; untagged update calls, the feedback merge and the aggregator's requests are
# taken to follow each other).
STEP_PHASES = ("forward", "judge", "feedback", "combine", "update", "gate")
ROUND_PHASES = ("merge", "select", "evaluation")
SEQUENTIAL = {"combine", "update", "merge"}


def _phase_of(tag: dict, guess: str) -> str:
    purpose = tag.get("purpose", guess)
    if purpose == "feedback" and guess == "combine":
        return "combine"
    if purpose == "aggregation":
        return "merge" if guess == "aggregation" else "select"
    return purpose


def _chain_of(tag: dict, phase: str, index: int) -> object:
    """The chain a call belongs to within its phase: calls of one chain follow each other."""
    if "rewrite" in tag:
        return ("rewrite", tag["rewrite"])
    return phase if phase in SEQUENTIAL else index


def _longest(calls: list[tuple[object, float]]) -> float:
    chains: dict[object, float] = defaultdict(float)
    for chain, cost in calls:
        chains[chain] += cost
    return max(chains.values(), default=0.0)


def _chain(groups: dict[str, list[tuple[object, float]]], phases: Sequence[str]) -> float:
    return sum(_longest(groups[name]) for name in phases if groups.get(name))


def critical_path(log: list[dict]) -> dict:
    """The shortest possible wall time of the logged run: its call graph (from the tags) with
    each call costing the delay the server was configured to give it, unlimited concurrency
    and no time spent outside the calls.

    initial evaluation (val ∥ test) → per round: max over clients of their steps in sequence
    (forward ∥ → feedback ∥ → update → gate ∥), then merge → validation ∥ → final test ∥."""
    initial: list[float] = []
    final: list[float] = []
    steps: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    post: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    untagged = 0
    for index, entry in enumerate(log):
        tag = json.loads(entry["tag"]) if entry.get("tag") else {}
        cost = entry["delay"]  # the configured latency plus the request's (hashed) jitter
        phase = tag.get("phase")
        if phase == "initial":
            initial.append(cost)
        elif phase == "final":
            final.append(cost)
        elif phase == "round":
            part = _phase_of(tag, entry["purpose"])
            groups = (
                steps[(tag["round"], tag["client"], tag.get("step", 0))]
                if "client" in tag
                else post[tag["round"]]
            )
            groups[part].append((_chain_of(tag, part, index), cost))
        else:
            untagged += 1
    clients: dict[tuple[int, int], float] = defaultdict(float)
    for (round_number, client, _), groups in steps.items():
        clients[(round_number, client)] += _chain(groups, STEP_PHASES)
    rounds = []
    for number in sorted({r for r, _ in clients} | set(post)):
        chains = {c: t for (r, c), t in clients.items() if r == number}
        slowest = max(chains, key=chains.get) if chains else None
        training = chains.get(slowest, 0.0) if chains else 0.0
        after = _chain(post[number], ROUND_PHASES)
        rounds.append(
            {
                "round": number,
                "training": training,
                "slowest_client": slowest,
                "after_training": after,
                "total": training + after,
            }
        )
    first = max(initial, default=0.0)
    last = max(final, default=0.0)
    return {
        "lower_bound_seconds": first + sum(r["total"] for r in rounds) + last,
        "initial": first,
        "rounds": rounds,
        "final": last,
        "calls": len(log),
        "untagged_calls": untagged,
    }


def observed_spans(log: list[dict]) -> dict:
    """Wall time from the first arrival to the last reply of each part of the run (initial,
    each round's training and what follows it, final): compare with the critical path's parts."""
    spans: dict[str, list[float]] = {}
    for entry in log:
        tag = json.loads(entry["tag"]) if entry.get("tag") else {}
        part = tag.get("phase", "untagged")
        if part == "round":
            part = f"round{tag['round']}/" + ("training" if "client" in tag else "after_training")
        low, high = spans.get(part, [entry["arrival"], entry["end"]])
        spans[part] = [min(low, entry["arrival"]), max(high, entry["end"])]
    return {part: round(high - low, 3) for part, (low, high) in spans.items()}


def concurrency_profile(log: list[dict]) -> dict:
    """Peak requests in flight at the server, and the busy time (at least one in flight)."""
    events = sorted([(e["arrival"], 1) for e in log] + [(e["end"], -1) for e in log])
    level = peak = 0
    busy = 0.0
    since = None
    for moment, change in events:
        if level == 0 and change == 1:
            since = moment
        level += change
        peak = max(peak, level)
        if level == 0 and since is not None:
            busy += moment - since
    return {"peak_in_flight": peak, "busy_seconds": busy}


def _child_main(spec_path: str, result_path: str) -> None:
    """Run the spec's experiment; with BENCH_PROFILE=FILE, under cProfile, its stats in FILE
    (read them with `python -m pstats FILE`)."""
    spec = json.loads(Path(spec_path).read_text())
    profile = os.environ.get("BENCH_PROFILE")
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    result = asyncio.run(run_experiment(spec["config"], spec["out_dir"]))
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    _child_main(*sys.argv[1:3])
