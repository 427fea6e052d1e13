"""The injection attack against the real 0.5B model (tiny: 3 clients of one example each, one
round, 3 validation questions): with defenses on, the injected instruction stays out of the
global prompt and validation accuracy stays within one question of the attack-free run."""

from __future__ import annotations

import asyncio

import pytest
from helpers.models import SMALL_MODEL

from fedtextgrad import load_config, run_async
from fedtextgrad.federated import Engines
from fedtextgrad.robustness import INJECTION

pytestmark = [pytest.mark.model, pytest.mark.slow]


def tiny(data_dir, llm_settings, **federation):
    return load_config(
        {
            "seed": 0,
            "engines": {"forward": SMALL_MODEL},
            "task": {"name": "bbh_object_counting", "train_size": 3, "data_dir": str(data_dir)},
            "train": {
                "batch_size": 1,
                "local_steps": 1,
                "forward_max_tokens": 160,
                "feedback_max_tokens": 96,
                "update_max_tokens": 200,
            },
            "federation": {"clients": 3, "rounds": 1, **federation},
            "defense": {"enabled": True},
            "eval": {"val_size": 3, "test_size": 1},
            "llm": llm_settings.model_dump(),
        }
    )


def test_defenses_keep_a_real_injection_out(tmp_path, data_dir, llm_settings):
    attacked_cfg = tiny(data_dir, llm_settings, attackers=1, attack="injection")
    clean_cfg = tiny(data_dir, llm_settings)
    engines = Engines.open(attacked_cfg)  # one model, one cache for both runs

    async def both():
        try:
            attacked = await run_async(attacked_cfg, tmp_path / "attacked", engines=engines)
            clean = await run_async(clean_cfg, tmp_path / "clean", engines=engines)
        finally:
            await engines.aclose()
        return attacked, clean

    attacked, clean = asyncio.run(both())
    entry = attacked.rounds[0]
    uploaded = next(c["prompt"] for c in entry["clients"] if c["client"] == 2)
    assert INJECTION in uploaded  # the attack was made ...
    assert entry["defense"]["rejected"] == [2]  # ... and screened out
    assert INJECTION not in entry["global_prompt"] and INJECTION not in attacked.final_prompt
    one_question = 1 / 3 + 1e-9
    assert entry["val_accuracy"] >= clean.rounds[0]["val_accuracy"] - one_question
