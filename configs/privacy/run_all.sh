#!/usr/bin/env bash
# Every privacy variant of docs/privacy.md's table, on one task config, then the table.
# Usage: configs/privacy/run_all.sh configs/privacy/object_counting.toml runs/privacy/oc [VARIANT...]
#        [-- RUN OPTIONS...]   (passed to every `fedtextgrad run`, e.g. -- --set llm.threads=1)
# The variants share one response cache, so the calls they have in common run once.
set -euo pipefail
config=$1
out=$2
shift 2
names=()
extra=()
while (($#)); do
  if [ "$1" = -- ]; then
    shift
    extra=("$@")
    break
  fi
  names+=("$1")
  shift
done
((${#names[@]})) || names=(none sanitize policy instruction sanitize_llm)
cache=${FEDTEXTGRAD_PRIVACY_CACHE:-$out/cache}
fed=${FEDTEXTGRAD:-.venv/bin/fedtextgrad}
declare -A variants=(
  [none]=""
  [instruction]="--set privacy.instruction_defense=true"
  [sanitize]="--set privacy.sanitize='rules'"
  [sanitize_llm]="--set privacy.sanitize='rules+llm'"
  [policy]="--set privacy.upload_policy='block'"
)
for name in "${names[@]}"; do
  # shellcheck disable=SC2086
  [ -f "$out/$name/results.json" ] && resume=--resume || resume=
  $fed run "$config" --out "$out/$name" --set "llm.cache_dir='$cache'" --set llm.timeout=${FEDTEXTGRAD_TIMEOUT:-600} ${variants[$name]} $resume "${extra[@]}"
done
.venv/bin/python -m fedtextgrad.privacy.table "${names[@]/#/$out/}"
