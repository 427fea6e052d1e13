"""A small federation in the scripted toy world: a config, engines that answer like a model
that learns the toy rule, and a run."""

from __future__ import annotations

import asyncio

from fedtextgrad import load_config, run_async
from fedtextgrad.federated import Engines, prepare_data
from fedtextgrad.llm import scripted_engine
from helpers.scripted import toy_responder


def config(**sections):
    base = {
        "seed": 1,
        "task": {"name": "bbh_object_counting", "train_size": 9},
        "train": {"batch_size": 2, "local_steps": 1, "gate": "batch"},
        "federation": {"clients": 3, "rounds": 2, "aggregation": "uid_summarize"},
        "eval": {"val_size": 4, "test_size": 4},
        "llm": {"cache": False},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return load_config(base)


def toy_engines(cfg, cache=None, fail_after: int | None = None) -> Engines:
    data = prepare_data(cfg)
    targets = {ex.input: ex.target for ex in data.val + data.test}
    targets |= {ex.input: ex.target for part in data.client_train for ex in part}
    calls = 0

    def responder(messages):
        nonlocal calls
        calls += 1
        if fail_after is not None and calls > fail_after:
            raise RuntimeError("the machine lost power")
        return toy_responder(messages, targets=targets)

    llm = scripted_engine(responder, cache=cache)
    return Engines(llm, llm, llm)


def run(cfg, out, **kw):
    engines = kw.pop("engines", None) or toy_engines(cfg)
    return asyncio.run(run_async(cfg, out, engines=engines, **kw))
