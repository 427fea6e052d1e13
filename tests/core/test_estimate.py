"""`fedtextgrad run --dry-run`: the schedule's calls, from the config alone, against a run's."""

from __future__ import annotations

import asyncio

import pytest
from helpers.scripted import toy_responder

from fedtextgrad import load_config, run_async
from fedtextgrad.estimate import Rates, estimate
from fedtextgrad.federated import Engines, prepare_data
from fedtextgrad.llm import scripted_engine


def never_learns(aggregation: str = "uid_summarize", **train) -> tuple:
    """A world where every answer is wrong and every rewrite new: each step and round runs its
    whole schedule, and nothing is scored twice."""
    cfg = load_config(
        {
            "task": {"name": "bbh_object_counting", "train_size": 24},
            "train": {"batch_size": 2, "local_steps": 2, "candidates": 1, "induce": False, **train},
            "federation": {
                "clients": 2,
                "rounds": 2,
                "acceptance": "always",
                "aggregation": aggregation,
            },
            "eval": {"val_size": 4, "test_size": 5},
            "llm": {"cache": False},
        }
    )
    rewrites = 0

    def responder(messages):
        nonlocal rewrites
        if "IMPROVED_VARIABLE" in messages[-1]["content"]:
            rewrites += 1
            return f"<IMPROVED_VARIABLE>Idea {rewrites}.</IMPROVED_VARIABLE>"
        return toy_responder(messages, targets={})

    llm = scripted_engine(responder)
    return cfg, Engines(llm, llm, llm)


@pytest.mark.parametrize(
    "train, exact",
    [
        ({"method": "ours", "gate": "none"}, True),
        ({"method": "induce"}, True),
        ({"method": "ours"}, False),  # every candidate reverted: the server scores nothing new
        ({"method": "paper"}, False),
        ({"gate": "none", "aggregation": "select"}, False),  # the new prompt's score is reused
        ({"gate": "none", "aggregation": "retain"}, False),  # and no task is lost
    ],
)
def test_the_estimate_counts_the_calls_of_the_schedule(tmp_path, train, exact):
    train = dict(train)
    aggregation = train.pop("aggregation", "uid_summarize")
    cfg, engines = never_learns(aggregation, **train)
    results = asyncio.run(run_async(cfg, tmp_path, engines=engines)).data
    calls = {purpose: c["calls"] for purpose, c in results["usage"]["by_purpose"].items()}
    est = estimate(cfg, prepare_data(cfg), Rates(retried=0, scored=1))  # this world's
    estimated = {purpose: n for purpose, n in est.calls.items() if n}
    if exact:
        assert estimated == calls
    else:  # an upper bound, exact for the clients' steps (within 25% of a real run: the model test)
        assert all(estimated[p] >= n for p, n in calls.items())
        steps = [p for p in ("forward", "feedback", "update", "gate") if p in calls]
        assert all(estimated[p] == calls[p] for p in steps)
    assert est.cost(1.0) == sum(est.tokens.values()) / 1e6 > 0


def test_the_dry_run_prints_the_estimate_and_calls_no_engine(tmp_path):
    from typer.testing import CliRunner

    from fedtextgrad.cli import app

    config = tmp_path / "c.toml"
    config.write_text(
        '[engines]\nforward = "openai:m"\n[task]\nname = "ii_sum"\n[llm]\n'
        'base_url = "http://127.0.0.1:9"\nprice_per_mtok = 2.0\n'
    )
    result = CliRunner().invoke(
        app, ["run", str(config), "--dry-run", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    assert "calls" in result.output and "at most ~$" in result.output
    assert not (tmp_path / "r").exists()


def test_the_progress_marks_add_up_to_the_estimate():
    cfg, _ = never_learns()
    est = estimate(cfg, prepare_data(cfg))
    marks = [est.after_initial, *est.after_round]
    assert marks == sorted(marks) and len(est.after_round) == cfg.federation.rounds
    steps = len(est.clients[0]) * cfg.train.local_steps
    assert est.after_initial + steps * est.per_step[0] < est.after_round[0]  # + the server's
    assert est.after_round[-1] + cfg.eval.test_size == pytest.approx(est.total_calls)
