"""How close does a federated run come to its critical path, and how much faster is it than the
sequential schedule?

The standard experiment (10 clients, 3 rounds, K=3 local steps, batch 3, validation 50, test 100,
generated object counting, cache off) runs against bench/latency_server.py, which answers each
call after `fixed + per_token * output_tokens` seconds. The run's call graph is rebuilt from the
server's log and its critical path (unlimited concurrency, configured latencies) is the lower
bound on wall time. The experiment is run three times: with enough concurrency for its widest
fan-out, with the openai engine's default concurrency, and with concurrency 1 (the paper's
sequential schedule).

`--shape heterogeneous` runs the paper's heterogeneous experiment instead: 3 clients, one
generated BBH task each (object counting, multistep arithmetic, word sorting), 2 rounds x 3
local steps, batch 3, `summarize`, validation and test 100.

    .venv/bin/python bench/orchestration.py            # about 8 minutes, most of it sequential
    .venv/bin/python bench/orchestration.py --shape heterogeneous
    .venv/bin/python bench/orchestration.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from benchlib import (
    RESULTS_DIR,
    concurrency_profile,
    critical_path,
    experiment_config,
    latency_server,
    machine,
    observed_spans,
    run_in_child,
    write_answers,
    write_json,
)

from fedtextgrad.config import apply_override

COUNTING = ("bbh_object_counting",)
STANDARD = dict(clients=10, rounds=3, steps=3, batch=3, val=50, test=100, tasks=COUNTING)
QUICK = dict(clients=3, rounds=1, steps=1, batch=2, val=4, test=4, tasks=COUNTING)
BBH_THREE = ("bbh_object_counting", "bbh_multistep_arithmetic_two", "bbh_word_sorting")
HETEROGENEOUS = dict(
    clients=3,
    rounds=2,
    steps=3,
    batch=3,
    val=100,
    test=100,
    tasks=BBH_THREE,
    aggregation="summarize",
)
SHAPES = {  # --shape -> (full sizes, --quick sizes)
    "standard": (STANDARD, QUICK),
    "heterogeneous": (HETEROGENEOUS, QUICK | dict(tasks=BBH_THREE, aggregation="summarize")),
}


def measure(server, config: dict, work: Path) -> dict:
    server.reset()
    child = run_in_child(config, work)
    log = server.log()
    stats = server.stats()
    path = critical_path(log)
    bound = path["lower_bound_seconds"]
    return {
        "concurrency": config["llm"]["concurrency"],
        "wall_seconds": round(child["wall_seconds"], 3),
        "critical_path_seconds": round(bound, 3),
        "ratio": round(child["wall_seconds"] / bound, 3) if bound else None,
        "calls": len(log),
        "peak_concurrent_requests": stats["peak_concurrency"],
        "peak_rss_mb": round(child["peak_rss_mb"], 1),
        "client_cpu_seconds": round(child["cpu_seconds"], 2),
        "server_cpu_seconds": round(stats["cpu_seconds"], 2),
        "server_busy_seconds": round(concurrency_profile(log)["busy_seconds"], 3),
        "round_seconds": child["round_seconds"],
        "critical_path": path,
        "observed_spans": observed_spans(log),
        "calls_by_purpose": child["usage_by_purpose"],
        "test_accuracy": [child["initial_test_accuracy"], child["final_test_accuracy"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=SHAPES, default="standard", help="the experiment")
    parser.add_argument("--quick", action="store_true", help="small sizes (3 clients, 1 round)")
    parser.add_argument("--fixed", type=float, help="seconds per call (default 0.2; quick 0.02)")
    parser.add_argument("--per-token", type=float, help="seconds per output token (0.005; 0)")
    parser.add_argument("--concurrency", type=int, default=256, help="the parallel run's limit")
    parser.add_argument(
        "--runs",
        help="which runs, comma-separated: parallel, default (the engine's default limit), "
        "sequential (concurrency 1), or a number N (concurrency N); "
        "default: parallel,default,sequential; --quick: parallel,sequential",
    )
    parser.add_argument(
        "--set", action="append", default=[], help="config override, e.g. privacy.audit=false"
    )
    parser.add_argument(
        "--out", type=Path, help="default: bench/results/orchestration[_SHAPE].json"
    )
    args = parser.parse_args()
    sizes = SHAPES[args.shape][args.quick]
    suffix = "" if args.shape == "standard" else f"_{args.shape}"
    out = args.out or RESULTS_DIR / f"orchestration{suffix}.json"
    fixed = args.fixed if args.fixed is not None else (0.02 if args.quick else 0.2)
    per_token = args.per_token if args.per_token is not None else (0.0 if args.quick else 0.005)
    limits = {"parallel": args.concurrency, "default": None, "sequential": 1}
    chosen = args.runs or ("parallel,sequential" if args.quick else "parallel,default,sequential")
    variants, seen = [], Counter()
    for name in chosen.split(","):
        label, limit = (
            (f"concurrency_{name}", int(name)) if name.isdigit() else (name, limits[name])
        )
        seen[label] += 1  # a run named twice is measured twice: concurrency_128#2
        variants.append((label if seen[label] == 1 else f"{label}#{seen[label]}", limit))

    before = machine()
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        work = Path(tmp)
        answers = write_answers(experiment_config("http://x", concurrency=1, **sizes), work / "a")
        runs = {}
        with latency_server(fixed=fixed, per_token=per_token, answers=answers) as server:
            for name, concurrency in variants:
                config = experiment_config(server.url, concurrency=concurrency, **sizes)
                for override in args.set:
                    apply_override(config, override)
                runs[name] = measure(server, config, work / name)
                run = runs[name]
                print(
                    f"{name:>20}: wall {run['wall_seconds']:.2f} s, critical path "
                    f"{run['critical_path_seconds']:.2f} s, ratio {run['ratio']}, "
                    f"{run['calls']} calls, peak {run['peak_concurrent_requests']} in flight, "
                    f"peak RSS {run['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    sequential = runs.get("sequential", {}).get("wall_seconds")
    parallel = runs.get("parallel", {}).get("wall_seconds")
    speedup = sequential / parallel if sequential and parallel else None
    report = {
        "benchmark": "orchestration",
        "quick": args.quick,
        "shape": args.shape,
        "experiment": {
            **sizes,
            "generated": True,
            "cache": False,
        },
        "overrides": args.set,
        "latency": {"fixed_seconds": fixed, "per_token_seconds": per_token},
        "machine": before,
        "load_average_after": machine()["load_average"],
        "runs": runs,
        "speedup_vs_sequential": round(speedup, 2) if speedup else None,
        "same_call_graph": len({r["calls"] for r in runs.values()}) == 1,
        "goals": {
            "ratio_at_most_1.25": runs["parallel"]["ratio"] <= 1.25 if parallel else None,
            "speedup_at_least_8": speedup >= 8 if speedup else None,
        },
    }
    if speedup:
        print(f"speed-up over the sequential schedule: {speedup:.1f}x")
    write_json(out, report)


if __name__ == "__main__":
    main()
