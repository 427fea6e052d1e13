"""Privacy features on the real embedded 0.5B model, at the smallest sizes that exercise them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fedtextgrad import load_config, run
from fedtextgrad.llm import open_engine
from fedtextgrad.privacy import audit, build_profile, exposed, make_canaries, rewrite, scrub
from fedtextgrad.tasks import load_task
from fedtextgrad.textgrad import Objective

pytestmark = [pytest.mark.model, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SMALL_MODEL = "local:qwen2.5-coder-0.5b"


def test_a_canary_run_reports_exposure(tmp_path):
    cfg = load_config(
        ROOT / "configs" / "tiny.toml",
        [
            f"llm.cache_dir='{tmp_path / 'cache'}'",
            "federation.clients=1",
            "task.train_size=1",
            "train.batch_size=1",
            "train.gate='none'",
            "eval.val_size=1",
            "eval.test_size=1",
            "privacy.canaries=1",
        ],
    )
    data = run(cfg, tmp_path / "run").data
    summary = data["privacy"]["canaries"]
    assert summary["count"] == 1 and summary["planted"][0]["example"] == 0
    upload = data["rounds"][0]["clients"][0]
    # the summary agrees with what the upload's text shows
    found = exposed(upload["prompt"], make_canaries(1, cfg.seed))
    assert summary["in_upload"] == len(found) and summary["in_global"] == len(found)
    audited = data["rounds"][0]["privacy"]["uploads"][0]
    assert {"lcs_chars", "shared_ngrams", "specific", "leaks"} <= audited.keys()
    assert upload["privacy"]["sent"] == "trained" and len(upload["privacy"]["steps"]) == 1
    assert data["privacy"]["leakage"]["uploads"] == 1


def test_the_llm_rewrite_on_the_real_model_ends_clean(llm_settings):
    task = load_task("bbh_object_counting", train_size=3, val_size=1, test_size=1)
    objective = Objective.of(task)
    profile = build_profile(task.train, task.initial_prompt)
    leaky = (
        "You will answer a reasoning question. Think step by step. List every item with its count, "
        f"then add only the asked kind. For example: {task.train[0].input}\n{task.answer_format}"
    )
    scrubbed = scrub(leaky, profile, objective)
    assert scrubbed.dropped_sentences >= 1

    async def main():
        llm = open_engine(SMALL_MODEL, llm_settings)
        try:
            return await rewrite(llm, scrubbed.prompt, objective, max_chars=2000, max_tokens=200)
        finally:
            await llm.aclose()

    candidate, reason = asyncio.run(main())
    if candidate is None:  # a malformed reply is reported, and the guard keeps the scrubbed text
        assert reason.startswith("the ")
        return
    assert reason == "rewritten" and objective.keeps_format(candidate)
    final = scrub(candidate, profile, objective).prompt  # what the guard would upload
    found = audit(final, profile)
    assert found.specific_count == 0 and found.shared_ngrams[5] == 0
