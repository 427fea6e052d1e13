"""A merge on its own (issue 31): replay aggregators on the uploads of finished heterogeneous runs
and score each merge on the test data, task by task, against the best upload. A merge design is
tried here in minutes, on the same uploads, before a sweep spends hours on it.

    python bench/merge_replay.py runs/findings_aggregation_1.5b --only 'clients3__*retain*' \
        --aggregators retain,uid_summarize --round 1

For each run matching --only and each of its rounds (or only --round), the round's uploads are
merged by each aggregator (the run's own config: engines, server validation data) and the
merge, and each distinct upload, are scored on the run's test examples. Per task: retention =
the merge's accuracy over the best upload's; the merge's length over the longest upload's.
Round 1's uploads do not depend on the aggregator: replaying one run per seed covers them all.
Calls go through the response cache: a merge the sweep made is not paid for again."""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
from pathlib import Path

from fedtextgrad import load_config
from fedtextgrad.federated.aggregators import Upload, aggregate
from fedtextgrad.federated.prepare import Engines, prepare_data
from fedtextgrad.federated.runtime import InProcessRuntime
from fedtextgrad.federated.server import Server
from fedtextgrad.federated.store import RunStore


async def replay(run_dir: Path, aggregators: list[str], rounds: set[int] | None) -> list[dict]:
    results = json.loads((run_dir / "results.json").read_text())
    config = load_config(results["config"])
    data = prepare_data(config)
    engines = Engines.open(config)
    store = RunStore(run_dir / "merge_replay")  # never written: the server only scores here
    server = Server(config, data, engines, InProcessRuntime([], 60), store)
    rows = []
    try:
        previous = results["initial"]["prompt"]
        for entry in results["rounds"]:
            if rounds is None or entry["round"] in rounds:
                uploads = [
                    Upload(c["client"], c["prompt"], c["num_examples"]) for c in entry["clients"]
                ]
                distinct = list(dict.fromkeys(u.prompt for u in uploads))
                tested = await asyncio.gather(*(server.evaluate(p, data.test) for p in distinct))
                scored = [t["by_task"] for t in tested]
                best = {t: max(s[t] for s in scored) for t in scored[0]}
                longest = max(map(len, distinct))
                for method in aggregators:
                    context = server._aggregation_context(previous)
                    merged = await aggregate(method, uploads, context)
                    by_task = (await server.evaluate(merged.prompt, data.test))["by_task"]
                    rows.append(
                        {
                            "run": run_dir.name,
                            "round": entry["round"],
                            "aggregator": method,
                            "best": best,
                            "merge": by_task,
                            "retention": {
                                t: by_task[t] / best[t] if best[t] else 1.0 for t in best
                            },
                            "length_ratio": len(merged.prompt) / longest,
                            "info": merged.info,
                        }
                    )
            previous = entry["global_prompt"]
    finally:
        await engines.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--only", default="*", help="run names to replay (a glob)")
    parser.add_argument("--aggregators", default="retain")
    parser.add_argument("--round", type=int, action="append", help="only these rounds")
    parser.add_argument("--out", type=Path, help="also write the rows here (JSON)")
    args = parser.parse_args()
    runs = sorted(
        d
        for d in args.sweep_dir.iterdir()
        if fnmatch.fnmatch(d.name, args.only) and (d / "results.json").exists()
    )
    rows = []
    for run_dir in runs:
        for row in asyncio.run(
            replay(run_dir, args.aggregators.split(","), set(args.round) if args.round else None)
        ):
            retention = " ".join(f"{t}={r:.2f}" for t, r in row["retention"].items())
            print(
                f"{row['run']} round {row['round']} {row['aggregator']}: {retention}; "
                f"worst {min(row['retention'].values()):.2f}; "
                f"length x{row['length_ratio']:.2f}",
                flush=True,
            )
            rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
