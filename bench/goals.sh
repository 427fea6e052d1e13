#!/usr/bin/env bash
# Re-measure the performance goals (BENCHMARKS.md, issue 21) one benchmark at a time, on an idle
# machine: no model job may run beside them (the figures are CPU and wall-clock ratios). Each
# writes bench/results/goals_*.json and prints its figures; the load average at each start is
# in the file.
#   bash bench/goals.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=bench/results
# wall <= 1.25x the critical path at default settings; client CPU per call
$py bench/orchestration.py --runs default,default --out $out/goals_standard.json
$py bench/orchestration.py --shape heterogeneous --runs default,default \
    --out $out/goals_heterogeneous.json
# the paper's heterogeneous experiment took 179.9 s at 0.5 s per call (issue 21): the same work
# (the same method too: the paper's step and gate, `train.method = "paper"`), and with ours
$py bench/orchestration.py --shape heterogeneous --runs default --fixed 0.5 --per-token 0 \
    --set train.method=paper --out $out/goals_heterogeneous_paper_method.json
$py bench/orchestration.py --shape heterogeneous --runs default --fixed 0.5 --per-token 0 \
    --out $out/goals_heterogeneous_paper_latency.json
# a 1000-client round <= 1.5x its critical path; 10,000 clients in one process under 2 GB
$py bench/scale.py --clients 1000 --out $out/goals_scale_1000.json
$py bench/scale.py --clients 10000 --out $out/goals_scale_10000.json
