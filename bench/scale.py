"""Many clients in one process: one round with 10, 100 and 1000 clients (K=1, batch 1) against
bench/latency_server.py. Reports the round's wall time and critical path, peak memory, and the
orchestrator's own cost per client (CPU time, and wall time beyond the critical path).

Goal: 1000 clients in one process under 2 GB.

    .venv/bin/python bench/scale.py                  # about 2 minutes
    .venv/bin/python bench/scale.py --clients 10,100 --fixed 0.05
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchlib import (
    RESULTS_DIR,
    critical_path,
    experiment_config,
    latency_server,
    machine,
    run_in_child,
    write_answers,
    write_json,
)

from fedtextgrad.config import apply_override
from fedtextgrad.tasks.bbh import generate

EXAMPLES_PER_CLIENT = 2
VAL, TEST = 10, 10


def task_file(clients: int, folder: Path) -> Path:
    """Generated object counting questions as a custom task: the built-in task has only 50
    training examples, and a custom file is split 20/40/40, so 10 rows per client are written."""
    path = folder / f"object_counting_{clients}.jsonl"
    rows = generate("bbh_object_counting", max(5 * EXAMPLES_PER_CLIENT * clients, 50), 0)
    path.write_text(
        "".join(json.dumps({"input": r.input, "target": r.target}) + "\n" for r in rows)
    )
    return path


def config_for(url: str, clients: int, task: Path, overrides: list[str]) -> dict:
    config = experiment_config(
        url,
        clients=clients,
        rounds=1,
        steps=1,
        batch=1,
        val=VAL,
        test=TEST,
        concurrency=4 * clients + 64,  # never the limit: the round's widest fan-out is N
        train_size=EXAMPLES_PER_CLIENT * clients,
        tasks=(str(task),),
    )
    for override in overrides:
        apply_override(config, override)
    return config


def measure(server, config: dict, work: Path) -> dict:
    server.reset()
    child = run_in_child(config, work)
    log = server.log()
    stats = server.stats()
    path = critical_path(log)
    (round_path,) = path["rounds"]
    clients = config["federation"]["clients"]
    round_seconds = child["round_seconds"][0]
    in_round = [e for e in log if json.loads(e["tag"] or "{}").get("phase") == "round"]
    return {
        "clients": clients,
        "round_seconds": round_seconds,
        "round_critical_path_seconds": round(round_path["total"], 3),
        "round_ratio": round(round_seconds / round_path["total"], 2),
        "round_calls": len(in_round),
        "largest_request_kb": round(max(e["request_bytes"] for e in log) / 1024, 1),
        "peak_concurrent_requests": stats["peak_concurrency"],
        "peak_rss_mb": round(child["peak_rss_mb"], 1),
        "rss_before_run_mb": round(child["rss_before_run_mb"], 1),
        "peak_rss_in_run_mb": round(child["peak_rss_in_run_mb"], 1),
        "run_memory_per_client_kb": round(  # growth during the run only
            (child["peak_rss_in_run_mb"] - child["rss_before_run_mb"]) * 1024 / clients, 1
        ),
        "run_cpu_seconds": round(child["cpu_seconds"], 2),
        "cpu_ms_per_client": round(child["cpu_seconds"] * 1000 / clients, 2),
        "cpu_ms_per_call": round(child["cpu_seconds"] * 1000 / len(log), 2),
        "overhead_ms_per_client": round((round_seconds - round_path["total"]) * 1000 / clients, 2),
        "latency_server_cpu_seconds": round(stats["cpu_seconds"], 2),
        "run_wall_seconds": round(child["wall_seconds"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="10,100,1000", help="comma-separated client counts")
    parser.add_argument("--fixed", type=float, default=0.2, help="seconds per call")
    parser.add_argument("--per-token", type=float, default=0.005, help="seconds per output token")
    parser.add_argument(
        "--set", action="append", default=[], help="config override, e.g. privacy.audit=false"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "scale.json")
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",")]
    before = machine()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        tasks = {n: task_file(n, work) for n in counts}
        answers: dict[str, str] = {}
        for n in counts:
            path = write_answers(config_for("http://x", n, tasks[n], args.set), work / f"a{n}")
            answers.update(json.loads(path.read_text()))
        (work / "answers.json").write_text(json.dumps(answers))
        with latency_server(
            fixed=args.fixed, per_token=args.per_token, answers=work / "answers.json"
        ) as server:
            for n in counts:
                result = measure(
                    server, config_for(server.url, n, tasks[n], args.set), work / str(n)
                )
                results.append(result)
                print(
                    f"{n:>5} clients: round {result['round_seconds']:.2f} s (critical path "
                    f"{result['round_critical_path_seconds']:.2f} s), peak RSS "
                    f"{result['peak_rss_mb']:.0f} MB, {result['cpu_ms_per_client']:.1f} ms CPU "
                    f"per client, {result['round_calls']} calls",
                    flush=True,
                )
    largest = max(results, key=lambda r: r["clients"])
    smallest = min(results, key=lambda r: r["clients"])
    added = largest["clients"] - smallest["clients"]
    # What one more client costs, all included (its data, trainer, privacy profile, calls).
    growth = largest["peak_rss_in_run_mb"] - smallest["peak_rss_in_run_mb"]
    marginal = growth * 1024 / added if added else None  # needs two client counts

    write_json(
        args.out,
        {
            "benchmark": "scale",
            "experiment": {
                "rounds": 1,
                "local_steps": 1,
                "batch_size": 1,
                "examples_per_client": EXAMPLES_PER_CLIENT,
                "val": VAL,
                "test": TEST,
                "aggregation": "uid_summarize",
                "cache": False,
            },
            "latency": {"fixed_seconds": args.fixed, "per_token_seconds": args.per_token},
            "overrides": args.set,
            "machine": before,
            "load_average_after": machine()["load_average"],
            "results": results,
            "marginal_memory_per_client_kb": round(marginal, 1) if added else None,
            "goals": {
                f"{largest['clients']}_clients_under_2GB": largest["peak_rss_mb"] < 2048,
            },
        },
    )


if __name__ == "__main__":
    main()
