"""The privacy table of docs/privacy.md from run directories:
`python -m fedtextgrad.privacy.table runs/privacy/oc/none runs/privacy/oc/sanitize ...`"""

from __future__ import annotations

import sys
from pathlib import Path

from fedtextgrad.errors import FedTextGradError, RunStateError, fail
from fedtextgrad.federated.store import read_results

COLUMNS = (
    "run",
    "defense",
    "test acc (initial → final)",
    "uploads leaking",
    "max specific tokens",
    "max copied 5-grams",
    "max LCS words",
    "global rounds leaking",
    "canaries in upload / global / other clients",
    "sanitized / blocked",
)


def defense_name(settings: dict) -> str:
    parts = []
    if settings.get("instruction_defense"):
        parts.append("instruction")
    if settings.get("sanitize", "off") != "off":
        parts.append(f"sanitize ({settings['sanitize']})")
    if settings.get("upload_policy", "off") != "off":
        parts.append("upload policy")
    return " + ".join(parts) or "none"


def row(run_dir: Path) -> list[str]:
    path = run_dir / "results.json"
    if not path.is_file():
        raise RunStateError(f"{path} not found: pass run directories of completed runs")
    results = read_results(path, "pass run directories of completed runs")
    if results.privacy is None or results.final is None or results.initial is None:
        raise RunStateError(f"{run_dir} has no privacy summary or is not complete")
    privacy = results.privacy
    leakage = privacy["leakage"]
    canaries = privacy.get("canaries")
    exposure = (
        f"{canaries['in_upload']} / {canaries['in_global']} / {canaries['in_other_clients']}"
        f" of {canaries['count']}"
        if canaries
        else "-"
    )
    copied = leakage["max_shared_ngrams"].get("5", "-")
    return [
        run_dir.name,
        defense_name(privacy["settings"]),
        f"{results.initial.test_accuracy:.2f} → {results.final.test_accuracy:.2f}",
        f"{leakage['uploads_leaking']} / {leakage['uploads']}",
        str(leakage["max_specific"]),
        str(copied),
        str(leakage["max_lcs_words"]),
        f"{leakage['global_rounds_leaking']} / {len(results.rounds)}",
        exposure,
        f"{privacy['defenses']['sanitized']} / {privacy['defenses']['blocked']}",
    ]


def markdown(run_dirs: list[Path]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(d)) + " |" for d in run_dirs]
    return "\n".join(lines)


def _after(scrubbed, profile, n: int) -> str:
    from fedtextgrad.privacy.audit import audit

    after = audit(scrubbed.prompt, profile)
    replaced = sum(scrubbed.replaced.values())
    return (
        f"{after.specific_count} / {after.shared_ngrams.get(n, 0)} "
        f"({replaced}, {scrubbed.dropped_sentences})"
    )


def what_if(run_dir: Path) -> str:
    """Each upload of a finished run, audited as it was and as the rules sanitizer would have
    made it, and whether the upload policy would have refused it. No model calls: the client
    data is re-derived from the run's config (same data directory needed)."""
    from fedtextgrad.config import load_config
    from fedtextgrad.federated.prepare import prepare_data
    from fedtextgrad.privacy.audit import audit
    from fedtextgrad.privacy.monitor import client_profiles, plant_canaries
    from fedtextgrad.privacy.sanitize import scrub

    results = read_results(run_dir / "results.json", "pass the directory of a completed run")
    config = load_config(results.config)
    if config.privacy.sanitize != "off" or config.privacy.upload_policy != "off":
        raise RunStateError(f"{run_dir}: --what-if needs a run without sanitizer or policy")
    data = plant_canaries(config, prepare_data(config))
    profiles = client_profiles(config, data)
    n = config.privacy.copy_ngram
    lines = [
        "| round | client | specific tokens | copied 5-grams | LCS words | after sanitizer: "
        "specific / copied / chars kept | policy |",
        "|" + " --- |" * 7,
    ]
    assert results.initial is not None
    incoming = results.initial.prompt
    for entry in results.rounds:
        for record in entry.clients:
            profile = profiles[record.client]
            prompt = record.prompt
            before = audit(prompt, profile)
            scrubbed = scrub(prompt, profile, data.objective, copy_ngram=n)
            new = audit(prompt, profile, f"{incoming}\n{profile.initial_prompt}")
            refused = new.specific_count > 0 or new.shared_ngrams.get(n, 0) > 0
            lines.append(
                f"| {entry.round} | {record.client} | {before.specific_count} | "
                f"{before.shared_ngrams.get(n, 0)} | {before.lcs_words} | "
                f"{_after(scrubbed, profile, n)} | {'refused' if refused else 'sent'} |"
            )
        incoming = entry.global_prompt
    return "\n".join(lines)


def candidates(run_dir: Path) -> str:
    """Every prompt the optimizer wrote in a run — accepted or rejected by the format checks —
    read back from the run's response cache, audited against the client it leaks most from,
    and audited again after the rules sanitizer. No model calls."""
    import re

    from fedtextgrad.config import load_config
    from fedtextgrad.federated.prepare import prepare_data
    from fedtextgrad.llm import ResponseCache
    from fedtextgrad.privacy.audit import audit
    from fedtextgrad.privacy.monitor import client_profiles, plant_canaries
    from fedtextgrad.privacy.sanitize import scrub

    results = read_results(run_dir / "results.json", "pass the directory of a completed run")
    config = load_config(results.config)
    data = plant_canaries(config, prepare_data(config))
    profiles = client_profiles(config, data)
    n = config.privacy.copy_ngram
    tagged = re.compile(r"<IMPROVED_VARIABLE>(.*?)(?:</IMPROVED_VARIABLE>|$)", re.DOTALL)
    store = ResponseCache(config.llm.cache_dir)._store  # read-only: every reply of the run
    replies = [store[key]["text"] for key in store.iterkeys()]
    texts = sorted({m.group(1).strip() for r in replies if (m := tagged.search(r))})
    lines = [
        "| candidate | client | specific tokens | copied 5-grams | LCS words | after sanitizer: "
        "specific / copied (tokens replaced, sentences dropped) |",
        "|" + " --- |" * 6,
    ]
    for number, text in enumerate(texts, 1):
        found = {c: audit(text, p) for c, p in enumerate(profiles)}
        client = max(found, key=lambda c: (found[c].specific_count, found[c].lcs_words))
        before = found[client]
        scrubbed = scrub(text, profiles[client], data.objective, copy_ngram=n)
        lines.append(
            f"| {number} | {client} | {before.specific_count} | {before.shared_ngrams.get(n, 0)} | "
            f"{before.lcs_words} | {_after(scrubbed, profiles[client], n)} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(
            "usage: python -m fedtextgrad.privacy.table [--what-if | --candidates] RUN_DIR...",
            file=sys.stderr,
        )
        return 2
    try:
        if argv[0] == "--what-if":
            print("\n\n".join(what_if(Path(a)) for a in argv[1:]))
            return 0
        if argv[0] == "--candidates":
            print("\n\n".join(candidates(Path(a)) for a in argv[1:]))
            return 0
        print(markdown([Path(a) for a in argv]))
    except FedTextGradError as error:
        fail(str(error), error.exit_status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
