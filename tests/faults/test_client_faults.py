"""Clients that crash or stall mid-round: the round completes with the clients that answered
if at least federation.min_clients did, is retried otherwise, and fails in one clear line."""

from __future__ import annotations

import asyncio
import json

import pytest
from helpers.scripted import toy_responder

from fedtextgrad import FedTextGradError, experiment, load_config, run_async
from fedtextgrad.federated import Engines, prepare_data
from fedtextgrad.llm import ResponseCache, scripted_engine
from fedtextgrad.llm.engine import LLM
from fedtextgrad.llm.scripted import ScriptedBackend


def config(**federation):
    return load_config(
        {
            "seed": 1,
            "task": {"name": "bbh_object_counting", "train_size": 9},
            "train": {"batch_size": 2, "local_steps": 1},
            "federation": {"clients": 3, "rounds": 2, "round_timeout": 5.0, **federation},
            "eval": {"val_size": 4, "test_size": 4},
            "llm": {"cache": False},
        }
    )


def toy(cfg) -> Engines:
    data = prepare_data(cfg)
    targets = {ex.input: ex.target for ex in data.val + data.test}
    targets |= {ex.input: ex.target for part in data.client_train for ex in part}
    llm = scripted_engine(lambda messages: toy_responder(messages, targets=targets))
    return Engines(llm, llm, llm)


class Misbehaving:
    """Wraps a client: on the listed (round, attempt)s it crashes halfway or stalls forever."""

    def __init__(self, client, fault: str, when: set[tuple[int, int]]):
        self.inner, self.id, self.fault, self.when = client, client.id, fault, when
        self.calls: dict[int, int] = {}

    async def run_round(self, prompt, round_number, local_steps, on_step=None, history=None):
        attempt = self.calls.get(round_number, 0)
        self.calls[round_number] = attempt + 1
        if (round_number, attempt) not in self.when:
            return await self.inner.run_round(prompt, round_number, local_steps, on_step, history)
        # Work a little first, so the fault strikes mid-round with LLM calls in flight.
        await self.inner.trainer.forward_llm.ask("warming up", purpose="forward")
        if self.fault == "crash":
            raise RuntimeError("segmentation fault in the client process")
        await asyncio.Event().wait()  # stall: never answers


def run_with(monkeypatch, tmp_path, cfg, faults: dict[int, tuple[str, set]]):
    original = experiment.build_clients

    def build(*args):
        clients = original(*args)
        return [Misbehaving(c, *faults[c.id]) if c.id in faults else c for c in clients]

    monkeypatch.setattr(experiment, "build_clients", build)
    return asyncio.run(run_async(cfg, tmp_path, engines=toy(cfg)))


def test_a_crashed_and_a_stalled_client_do_not_stop_the_round(monkeypatch, tmp_path):
    cfg = config(min_clients=1, round_timeout=0.5)
    results = run_with(
        monkeypatch, tmp_path, cfg, {0: ("crash", {(1, 0)}), 2: ("stall", {(1, 0), (2, 0)})}
    )
    first, second = results.rounds
    assert [c["client"] for c in first["clients"]] == [1]
    assert first["failures"] == [
        {
            "client": 0,
            "error": "RuntimeError: segmentation fault in the client process",
            "attempt": 0,
        },
        {"client": 2, "error": "no update within the 0.5 s deadline", "attempt": 0},
    ]
    assert [c["client"] for c in second["clients"]] == [0, 1]
    assert results.data["status"] == "complete"


def test_too_few_answers_retry_the_round_and_recovered_clients_count(monkeypatch, tmp_path):
    cfg = config(min_clients=3, round_timeout=0.5, round_retries=1)
    results = run_with(monkeypatch, tmp_path, cfg, {1: ("stall", {(1, 0)})})
    entry = results.rounds[0]
    assert [c["client"] for c in entry["clients"]] == [0, 1, 2]  # the second attempt
    assert entry["failures"] == [
        {"client": 1, "error": "no update within the 0.5 s deadline", "attempt": 0}
    ]


def test_clients_that_keep_failing_stop_the_run_in_one_line_keeping_done_rounds(
    monkeypatch, tmp_path
):
    cfg = config(min_clients=2, round_timeout=0.5, round_retries=1)
    always = {(2, 0), (2, 1)}
    with pytest.raises(FedTextGradError) as caught:
        run_with(monkeypatch, tmp_path, cfg, {0: ("crash", always), 1: ("stall", always)})
    message = str(caught.value)
    assert message.startswith("round 2: only 1 of 3 clients replied after 2 attempts")
    assert "\n" not in message
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["rounds"]) == 1 and saved["status"] == "running"
    assert saved["errors"][-1]["error"] == message and saved["errors"][-1]["rounds_done"] == 1
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").open()]
    assert events[-1]["event"] == "error"
    assert sum(e["event"] == "client_failure" for e in events) == 4

    # The clients come back: --resume finishes the run from round 2.
    monkeypatch.undo()
    resumed = asyncio.run(run_async(cfg, tmp_path, resume=True, engines=toy(cfg)))
    assert resumed.data["status"] == "complete" and resumed.rounds[0] == saved["rounds"][0]


def test_a_shared_request_survives_the_cancellation_of_its_sender(tmp_path):
    """Two clients send an identical request; the first misses the deadline and is cancelled.
    The second must still get its answer (it used to receive the first one's CancelledError)."""

    async def scenario():
        backend = ScriptedBackend(lambda m: "Answer: 4", delay=0.3)
        llm = LLM("scripted:shared", backend, cache=ResponseCache(tmp_path))
        sender = asyncio.create_task(llm.ask("same question", purpose="forward"))
        await asyncio.sleep(0.05)
        sharer = asyncio.create_task(llm.ask("same question", purpose="forward"))
        await asyncio.sleep(0.05)
        sender.cancel()
        return await sharer, sender.cancelled()

    assert asyncio.run(scenario()) == ("Answer: 4", True)
