"""Sweeps in the scripted toy world (helpers/scripted.py): the logic around the models, fast."""

from __future__ import annotations

from pathlib import Path

from fedtextgrad.federated import Engines, prepare_data
from fedtextgrad.llm import scripted_engine
from helpers.scripted import toy_responder

BASE = """\
seed = 0
[task]
name = "bbh_object_counting"
train_size = 6
[train]
batch_size = 2
local_steps = 1
[federation]
clients = 2
rounds = 2
aggregation = "concat"
[eval]
val_size = 3
test_size = 3
[llm]
cache = false
"""


class ToyPool:
    """Hands every run scripted engines; counts the calls they answer."""

    def __init__(self, fail_for: str | None = None):
        self.calls = 0
        self.fail_for = fail_for  # an aggregation method whose runs lose their engine

    def engines(self, config) -> Engines:
        data = prepare_data(config)
        examples = data.val + data.test + [ex for part in data.client_train for ex in part]
        targets = {ex.input: ex.target for ex in examples}
        broken = config.federation.aggregation == self.fail_for

        def responder(messages):
            self.calls += 1
            if broken:
                raise RuntimeError("the endpoint went away")
            return toy_responder(messages, targets=targets)

        llm = scripted_engine(responder)
        return Engines(llm, llm, llm)

    async def aclose(self) -> None:
        return None


def make_sweep_file(tmp_path: Path) -> Path:
    """A 2 × 2 sweep (concat / uid_summarize × seeds 0, 1) over the toy base config."""
    (tmp_path / "base.toml").write_text(BASE)
    path = tmp_path / "toy.toml"
    path.write_text(
        'base = "base.toml"\nquestion = "Which aggregation?"\nseeds = [0, 1]\n'
        '[grid]\nfederation.aggregation = ["concat", "uid_summarize"]\n'
    )
    return path
