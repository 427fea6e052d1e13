"""Acceptance: a leaking optimizer (copycat) is caught by the audit, undone by the sanitizer and
stopped by the upload policy; canaries are traced to (round, step)."""

from __future__ import annotations

import asyncio
import json

from copycat import INVENTED_NAME, RULE, copycat_engines

from fedtextgrad import load_config, run_async
from fedtextgrad.privacy.guard import INSTRUCTION_RULES


def config(**privacy):
    return load_config(
        {
            "seed": 3,
            "task": {"name": "bbh_object_counting", "train_size": 8},
            # a leaking optimizer, unfiltered: what the audit and the defenses must catch
            "train": {
                "batch_size": 2,
                "local_steps": 1,
                "gate": "none",
                "general_rules": False,
                "induce": False,  # one rewrite per step: the tables count them
            },
            "federation": {
                "clients": 2,
                "rounds": 2,
                "aggregation": "concat",
                "acceptance": "always",  # every aggregate is broadcast: the audit must see it
            },
            "eval": {"val_size": 2, "test_size": 2},
            "llm": {"cache": False},
            "privacy": {"canaries": 4, **privacy},
        }
    )


def run(tmp_path, **privacy):
    engines = copycat_engines()
    results = asyncio.run(run_async(config(**privacy), tmp_path, engines=engines))
    assert json.loads((tmp_path / "results.json").read_text()) == results.data
    return results.data, engines


def events(tmp_path, kind):
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def test_the_audit_catches_a_copied_example_and_traces_canaries(tmp_path):
    data, _ = run(tmp_path)
    first = data["rounds"][0]
    upload = first["privacy"]["uploads"][0]
    assert upload["client"] == 0 and upload["leaks"]
    assert upload["lcs_words"] >= 10 and upload["shared_ngrams"]["8"] > 0
    assert upload["specific_count"] > 0 and upload["canaries"]  # the canary's made-up name
    assert 0 in first["privacy"]["global"]["leaks_from"]
    assert "0" in first["privacy"]["global"]["exclusive"]  # tokens only client 0 holds
    summary = data["privacy"]["canaries"]
    assert summary["count"] == 4 and summary["client"] == 0
    assert summary["in_upload"] >= 1 and summary["in_global"] >= 1
    caught = [e for e in summary["exposure"] if e["upload"]]
    assert all(e["upload"]["step"] == 1 for e in caught)  # it came in at the first local step
    assert any(e["upload"]["round"] == 1 for e in caught)
    assert all(set(e["upload"]["parts"]) == {"name", "account", "phrase"} for e in caught)
    # round 2: client 1 starts from the leaky global prompt and passes the canaries on
    assert summary["in_other_clients"] >= 1
    assert any(o == {"client": 1, "round": 2} for e in caught for o in e["other_clients"])
    logged = events(tmp_path, "canary")
    assert {"upload", "global"} <= {e["where"] for e in logged}
    assert any(e["where"] == "upload" and e["client"] == 1 and e["step"] == 0 for e in logged)
    assert data["privacy"]["leakage"]["uploads_leaking"] >= 1
    assert data["rounds"][0]["clients"][0]["privacy"]["sent"] == "trained"


def test_the_sanitizer_removes_the_copy_and_keeps_the_strategy(tmp_path):
    data, _ = run(tmp_path, sanitize="rules")
    for entry in data["rounds"]:
        for upload, record in zip(entry["privacy"]["uploads"], entry["clients"], strict=True):
            assert record["privacy"]["sent"] == "sanitized"
            assert record["privacy"]["sanitizer"]["dropped_sentences"] >= 1
            assert upload["specific_count"] == 0 and not upload["canaries"]
            assert upload["shared_ngrams"]["5"] == 0 and not upload["leaks"]
            assert RULE in record["prompt"] and record["prompt"].endswith("numerical value.")
        assert entry["privacy"]["global"]["leaks_from"] == []
    assert data["privacy"]["canaries"]["in_upload"] == 0
    assert data["privacy"]["canaries"]["in_global"] == 0
    assert data["privacy"]["defenses"]["sanitized"] == 4


def test_the_llm_rewrite_is_scrubbed_again(tmp_path):
    data, engines = run(tmp_path, sanitize="rules+llm")
    record = data["rounds"][0]["clients"][0]["privacy"]
    assert record["sanitizer"]["rewrite"] == "rewritten"
    assert record["sanitizer"]["replaced_after_rewrite"] == {"names": 1}  # the invented name
    assert INVENTED_NAME not in data["rounds"][0]["clients"][0]["prompt"]
    assert "[NAME]" in data["rounds"][0]["clients"][0]["prompt"]
    assert data["usage"]["by_purpose"]["sanitize"]["calls"] == 4
    assert data["privacy"]["canaries"]["in_upload"] == 0


def test_the_upload_policy_refuses_a_leaking_prompt(tmp_path):
    data, _ = run(tmp_path, upload_policy="block")
    initial = data["initial"]["prompt"]
    for entry in data["rounds"]:
        for record in entry["clients"]:
            policy = record["privacy"]["policy"]
            assert not policy["allowed"] and record["privacy"]["sent"] == "incoming"
            assert any("example-specific tokens" in r for r in policy["reasons"])
            assert any("copied from examples" in r for r in policy["reasons"])
            assert record["prompt"] == initial  # the prompt it received instead
        assert not any(u["leaks"] for u in entry["privacy"]["uploads"])
    assert data["privacy"]["defenses"]["blocked"] == 4
    assert data["privacy"]["canaries"]["in_upload"] == 0


def test_the_policy_lets_a_sanitized_prompt_through(tmp_path):
    data, _ = run(tmp_path, sanitize="rules", upload_policy="block")
    records = [c["privacy"] for entry in data["rounds"] for c in entry["clients"]]
    assert all(r["policy"]["allowed"] and r["sent"] == "sanitized" for r in records)


def test_the_instruction_defense_reaches_the_update_request(tmp_path):
    _, engines = run(tmp_path, instruction_defense=True)
    requests = [m[-1]["content"] for m in engines.feedback.backend.requests]
    updates = [r for r in requests if "<CURRENT_PROMPT>" in r]
    assert updates and all(f"- {INSTRUCTION_RULES[0]}" in r for r in updates)
    _, plain = run(tmp_path / "plain")
    assert not any(
        INSTRUCTION_RULES[0] in m[-1]["content"] for m in plain.feedback.backend.requests
    )


def test_without_privacy_features_nothing_is_recorded(tmp_path):
    engines = copycat_engines()
    cfg = config(canaries=0, audit=False)
    data = asyncio.run(run_async(cfg, tmp_path, engines=engines)).data
    assert "privacy" not in data and "privacy" not in data["rounds"][0]
    assert "privacy" not in data["rounds"][0]["clients"][0]


def test_the_table_summarizes_runs(tmp_path):
    from fedtextgrad.privacy.table import markdown

    run(tmp_path / "none")
    run(tmp_path / "policy", upload_policy="block")
    table = markdown([tmp_path / "none", tmp_path / "policy"]).splitlines()
    assert len(table) == 4 and table[0].startswith("| run | defense |")
    assert "| none | none |" in table[2] and "| policy | upload policy |" in table[3]
    assert table[3].endswith("| 0 / 0 / 0 of 4 | 0 / 4 |")
    assert "4 / 4" in table[2]  # every upload of the copycat leaks


def test_the_privacy_record_survives_serialization(tmp_path):
    from fedtextgrad.federated.client import ClientUpdate
    from fedtextgrad.record import ClientUpload

    data, _ = run(tmp_path, sanitize="rules", upload_policy="block")
    record = ClientUpload.model_validate(data["rounds"][0]["clients"][0])
    assert record.privacy["policy"]["allowed"]
    assert ClientUpdate.from_record(record).to_record() == record  # as the Flower runtime sends it


def test_what_if_shows_what_the_sanitizer_and_policy_would_do(tmp_path):
    from fedtextgrad.privacy.table import what_if

    run(tmp_path)
    rows = what_if(tmp_path).splitlines()[2:]
    assert len(rows) == 4  # 2 rounds x 2 clients
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[2]) > 0 and cells[5].startswith("0 / 0 (")  # leaks; none after scrub
    assert rows[0].endswith("| refused |")


def test_candidates_audits_every_prompt_the_optimizer_wrote(tmp_path):
    from fedtextgrad.llm import ResponseCache
    from fedtextgrad.privacy.table import candidates

    cfg = config().model_copy(
        update={"llm": config().llm.model_copy(update={"cache": True, "cache_dir": str(tmp_path)})}
    )
    engines = copycat_engines(cache=ResponseCache(tmp_path))
    asyncio.run(run_async(cfg, tmp_path / "run", engines=engines))
    rows = candidates(tmp_path / "run").splitlines()[2:]
    assert len(rows) == 4  # one update per client and round
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[2]) > 0 and int(cells[3]) > 0 and cells[5].startswith("0 / 0 (")


def test_each_clients_profile_is_built_once_in_process(tmp_path, monkeypatch):
    # The guard and the monitor audit against the same profile: one build per client, not two.
    from fedtextgrad.privacy import monitor

    built = []
    original = monitor.build_profile

    def counted(*args, **kwargs):
        built.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(monitor, "build_profile", counted)
    data, _ = run(tmp_path, sanitize="rules")
    assert data["rounds"][0]["clients"][0]["privacy"]["audit"]  # the guard audited
    assert len(built) == 2  # two clients
