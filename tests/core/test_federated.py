"""Rounds, sampling, aggregation, failures and resume, in the scripted toy world."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from helpers.federation import config, run, toy_engines
from helpers.scripted import RULE, toy_responder

from fedtextgrad import FedTextGradError, run_async
from fedtextgrad.federated import Engines, prepare_data, sample_clients
from fedtextgrad.llm import ResponseCache, scripted_engine
from fedtextgrad.tasks import load_task


def test_sampling_is_seeded_and_takes_ceil_of_the_fraction():
    cfg = config(federation={"clients": 10, "sample_fraction": 0.25})
    assert len(sample_clients(cfg, 1)) == 3
    assert sample_clients(cfg, 1) == sample_clients(cfg, 1)
    assert len({tuple(sample_clients(cfg, r)) for r in range(1, 8)}) > 1


@pytest.mark.parametrize("method", ["concat", "summarize", "uid_summarize", "select"])
def test_a_federated_run_learns_and_writes_complete_results(tmp_path, method):
    events = []
    results = run(config(federation={"aggregation": method}), tmp_path, on_event=events.append)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data == results.data and data["status"] == "complete"
    assert data["initial"]["val_accuracy"] == 0.0
    assert RULE in data["final"]["prompt"] and data["final"]["test_accuracy"] == 1.0
    first = data["rounds"][0]
    assert [c["client"] for c in first["clients"]] == [0, 1, 2]
    assert first["aggregation"]["method"] == method or "note" in first["aggregation"]
    assert {"val_accuracy", "prompt_tokens", "seconds", "usage", "sampled"} <= first.keys()
    assert {"forward", "feedback", "update", "evaluation", "test"} <= data["usage"][
        "by_purpose"
    ].keys()
    final = data["final"]
    assert final["val_accuracy"] == 1.0 and final["round"] == 1  # the earliest of the best
    assert final["paired"]["diff"] == 1.0 and final["paired"]["n"] == 4
    assert final["last"]["round"] == 2
    assert (tmp_path / "prompts" / "final.txt").read_text().strip() == final["prompt"]
    kinds = [json.loads(line)["event"] for line in (tmp_path / "events.jsonl").open()]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("round") == 2
    assert [e["event"] for e in events] == kinds
    # every local step is logged as it happens, before its round ends
    steps = [e for e in events if e["event"] == "step"]
    assert sorted((e["round"], e["client"], e["step"]) for e in steps) == [
        (r, c, 1) for r in (1, 2) for c in (0, 1, 2)
    ]
    assert kinds.index("step") < kinds.index("round")
    assert {"accepted", "reason", "batch_accuracy"} <= steps[0].keys()


def test_concat_grows_and_summaries_keep_one_format_sentence(tmp_path):
    concat = run(config(federation={"aggregation": "concat"}), tmp_path / "c")
    merged = run(config(federation={"aggregation": "summarize"}), tmp_path / "s")
    fmt = "The last line of your response should be of the following format"
    distinct = {c["prompt"] for c in concat.rounds[0]["clients"]}
    assert len(distinct) >= 2 and concat.rounds[0]["global_prompt"].count(fmt) == len(distinct)
    assert merged.rounds[0]["global_prompt"].count(fmt) == 1
    assert merged.rounds[0]["global_prompt"].rstrip().endswith("a numerical value.")


def test_a_failing_client_does_not_stop_the_round(tmp_path):
    cfg = config(federation={"min_clients": 2, "rounds": 1})
    engines = toy_engines(cfg)
    from fedtextgrad import experiment

    original = experiment.build_clients

    def with_a_broken_client(*args):
        clients = original(*args)

        async def crash(*a, **k):
            raise ConnectionError("client 1 went away")

        clients[1].run_round = crash
        return clients

    experiment.build_clients = with_a_broken_client
    try:
        results = run(cfg, tmp_path, engines=engines)
    finally:
        experiment.build_clients = original
    entry = results.rounds[0]
    assert [c["client"] for c in entry["clients"]] == [0, 2]
    assert entry["failures"] == [
        {"client": 1, "error": "ConnectionError: client 1 went away", "attempt": 0}
    ]


def test_too_few_clients_retries_the_round_then_fails_clearly(tmp_path):
    cfg = config(federation={"min_clients": 3, "rounds": 1, "round_retries": 1})
    with pytest.raises(FedTextGradError, match=r"round 1: only 0 of 3 clients replied after 2"):
        run(cfg, tmp_path, engines=toy_engines(cfg, fail_after=8))


def test_resume_continues_the_same_schedule_at_no_token_cost(tmp_path):
    cfg = config(federation={"rounds": 3, "sample_fraction": 0.67}, llm={"cache": True})
    reference = run(cfg, tmp_path / "ref", engines=toy_engines(cfg))

    # Count the model calls of the initial evaluation and round 1 ...
    counting = toy_engines(cfg, cache=ResponseCache(tmp_path / "calibration"))
    marks = []

    def mark(event):
        if event["event"] == "round":
            marks.append(len(counting.forward.backend.requests))

    run(cfg, tmp_path / "calibration", engines=counting, on_event=mark)
    # ... then lose power right after them: every client of round 2 fails.
    cache = ResponseCache(tmp_path / "cache")
    with pytest.raises(FedTextGradError):
        run(cfg, tmp_path / "run", engines=toy_engines(cfg, cache=cache, fail_after=marks[0]))
    partial = json.loads((tmp_path / "run" / "results.json").read_text())
    assert partial["status"] == "running" and len(partial["rounds"]) == 1

    with pytest.raises(FedTextGradError, match="already holds a run: pass --resume"):
        run(cfg, tmp_path / "run")
    other = config(federation={"rounds": 4, "sample_fraction": 0.67})
    with pytest.raises(FedTextGradError, match="the config differs"):
        run(other, tmp_path / "run", resume=True)

    engines = toy_engines(cfg, cache=cache)
    resumed = run(cfg, tmp_path / "run", engines=engines, resume=True)
    replayed = resumed.rounds[0]["usage"]
    assert replayed == partial["rounds"][0]["usage"]  # round 1 was not re-run
    strip = lambda rs: [(r["sampled"], r["global_prompt"], r["val_accuracy"]) for r in rs]  # noqa: E731
    assert strip(resumed.rounds) == strip(reference.rounds)
    assert resumed.data["final"] == reference.data["final"]
    assert not list((tmp_path / "run").glob(".results.json.*"))  # no temp files left behind


def test_by_task_partition_gives_each_client_one_task():
    cfg = config(
        task={"name": None, "names": ["bbh_object_counting", "bbh_multistep_arithmetic_two"]},
        federation={"clients": 4, "partition": "by_task"},
    )
    data = prepare_data(cfg)
    owners = [{ex.task for ex in part} for part in data.client_train]
    assert owners == [{"bbh_object_counting"}, {"bbh_multistep_arithmetic_two"}] * 2
    assert {ex.task for ex in data.val} == {"bbh_object_counting", "bbh_multistep_arithmetic_two"}


def test_a_looping_merge_is_tidied_and_keeps_the_format_last():
    from fedtextgrad.federated.aggregators import AggregationContext, Upload, summarize
    from fedtextgrad.textgrad import Objective

    objective = Objective.of(
        load_task("bbh_object_counting", train_size=3, val_size=1, test_size=1)
    )
    loop = "\n".join(
        ["Count each item.", *(f"{n}. Skip other kinds." for n in range(1, 20)), "20."]
    )
    llm = scripted_engine(lambda m: f"<MERGED_PROMPT>{loop}</MERGED_PROMPT>")
    uploads = [Upload(0, "A.", 3), Upload(1, "B.", 3)]
    merged = asyncio.run(summarize(uploads, AggregationContext(objective, llm, "A.")))
    assert merged.prompt == f"Count each item.\n1. Skip other kinds.\n{objective.answer_format}"


def test_update_rules_from_the_config_reach_every_update_request(tmp_path):
    rule = "Keep at most five rules: merge or replace rules rather than adding a sixth."
    cfg = config(train={"update_rules": [rule]}, federation={"rounds": 1})
    engines = toy_engines(cfg)
    run(cfg, tmp_path, engines=engines)
    updates = [
        m[-1]["content"]
        for m in engines.feedback.backend.requests
        if "<CURRENT_PROMPT>" in m[-1]["content"]
    ]
    assert updates and all(f"- {rule}\n" in u for u in updates)


@pytest.mark.parametrize("rule, broadcast", [("improves", False), ("no_worse", True)])
def test_an_aggregate_that_only_ties_the_global_prompt_is_broadcast_only_if_no_worse(
    tmp_path, rule, broadcast
):
    from fedtextgrad.federated.server import Server
    from fedtextgrad.federated.store import RunStore
    from fedtextgrad.record import Acceptance

    cfg = config(federation={"acceptance": rule})
    server = Server(cfg, prepare_data(cfg), toy_engines(cfg), None, RunStore(tmp_path))

    async def evaluate(prompt, examples, purpose="evaluation"):
        return {"accuracy": 0.5}

    server.evaluate = evaluate
    check = asyncio.run(server._acceptance("merged", {"accuracy": 0.5}, "previous"))
    assert check == Acceptance(before=0.5, after=0.5, accepted=broadcast)


def test_the_run_keeps_the_test_replies_of_the_initial_and_final_prompts(tmp_path):
    cfg = config()
    results = asyncio.run(run_async(cfg, tmp_path, engines=toy_engines(cfg)))
    for name, part in (("initial_test", "initial"), ("final_test", "final")):
        lines = (tmp_path / "replies" / f"{name}.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        assert len(rows) == cfg.eval.test_size
        assert [r["score"] for r in rows] == results.data[part]["test_scores"]
        assert all(r["response"] and r["input"] and r["target"] for r in rows)
        assert {r["finish_reason"] for r in rows} == {"stop"}
    assert "attempts" not in json.dumps(results.data)


def test_a_run_stops_at_its_token_budget_and_resumes_to_the_unbudgeted_result(tmp_path):
    cache = ResponseCache(tmp_path / "cache.db")  # the resumed run replays, as a real one would
    whole = run(config(federation={"rounds": 3}), tmp_path / "whole")
    budget = whole.data["rounds"][0]["usage"]["total_tokens"]  # spent by the end of round 1
    cfg = config(federation={"rounds": 3}, llm={"budget_tokens": budget})
    events = []
    stopped = run(cfg, tmp_path / "run", engines=toy_engines(cfg, cache), on_event=events.append)
    assert stopped.data["status"] == "budget" and 1 <= len(stopped.data["rounds"]) < 3
    assert "final" not in stopped.data and events[-1]["event"] == "budget"
    more = config(federation={"rounds": 3}, llm={"budget_tokens": 10 * budget})
    done = run(more, tmp_path / "run", engines=toy_engines(more, cache), resume=True)
    assert done.data["status"] == "complete"
    assert [r["global_prompt"] for r in done.data["rounds"]] == [
        r["global_prompt"] for r in whole.data["rounds"]
    ]
    assert done.data["final"]["prompt"] == whole.data["final"]["prompt"]


def test_a_resumed_run_hands_each_client_the_history_it_had(tmp_path):
    # The scored history lives in the step records, not in the clients: a resume keeps it.
    def never_learns(cfg):
        def responder(messages):
            if "<CURRENT_PROMPT>" in messages[-1]["content"]:  # a new idea per request
                digest = hashlib.sha256(messages[-1]["content"].encode()).hexdigest()[:6]
                return f"<IMPROVED_VARIABLE>Idea {digest}.</IMPROVED_VARIABLE>"
            return toy_responder(messages, targets={})

        llm = scripted_engine(responder)
        return Engines(llm, llm, llm)

    settings = {
        "task": {"train_size": 24},  # 12 a client: a holdout of 4 to score the history on
        "train": {"gate": "select", "candidates": 2, "induce": False},
        "federation": {"clients": 2, "rounds": 3},
    }
    whole = run(config(**settings), tmp_path / "whole", engines=never_learns(config(**settings)))
    budget = whole.data["rounds"][0]["usage"]["total_tokens"]
    stopped = config(**settings, llm={"budget_tokens": budget})
    run(stopped, tmp_path / "run", engines=never_learns(stopped))
    assert len(json.loads((tmp_path / "run" / "results.json").read_text())["rounds"]) == 1
    resumed, engines = config(**settings), never_learns(config(**settings))
    run(resumed, tmp_path / "run", engines=engines, resume=True)
    asked = [r[-1]["content"] for r in engines.feedback.backend.requests]
    updates = [text for text in asked if "<CURRENT_PROMPT>" in text]
    assert updates and all("<PAST_PROMPTS>" in text for text in updates)
    done = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["global_prompt"] for r in done["rounds"]] == [
        r["global_prompt"] for r in whole.data["rounds"]
    ]


def test_a_client_is_built_alone_with_its_own_guard_and_attack(monkeypatch):
    """What a Flower SuperNode does: build its own client only (one privacy profile, not all)."""
    from fedtextgrad.experiment import build_client
    from fedtextgrad.privacy import monitor
    from fedtextgrad.robustness.attacks import MaliciousClient

    cfg = config(federation={"attackers": 1, "attack": "sabotage"}, privacy={"audit": True})
    data, engines = prepare_data(cfg), toy_engines(cfg)
    profiled = []
    real = monitor.build_profile
    monkeypatch.setattr(
        monitor,
        "build_profile",
        lambda train, *a, **k: profiled.append(train) or real(train, *a, **k),
    )
    honest = build_client(cfg, data, engines, 1)
    assert profiled == [data.client_train[1]] and honest.guard.profile is not None
    assert not isinstance(honest, MaliciousClient)
    assert isinstance(build_client(cfg, data, engines, 2), MaliciousClient)  # the last id
