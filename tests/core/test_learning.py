"""What makes a step learn: reply repairs, the filter of example-specific rules, candidate
selection on the minibatch plus a held-out slice, the paper's step, and the statistics."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from helpers.requests import made_from
from helpers.scripted import RULE, toy_responder
from scipy import stats as scipy_stats

from fedtextgrad.config import TrainConfig
from fedtextgrad.llm import scripted_engine
from fedtextgrad.stats import paired, pooled
from fedtextgrad.tasks import Example, load_task
from fedtextgrad.textgrad import LocalTrainer, Objective, parse_update, repairs, templates

TASK = load_task("bbh_object_counting", train_size=12, val_size=6, test_size=3)
OBJECTIVE = Objective.of(TASK)
FMT = TASK.answer_format
TARGETS = {ex.input: ex.target for ex in TASK.train + TASK.val + TASK.test}


# -- repairs ------------------------------------------------------------------------------------


def test_a_rewrite_without_the_format_sentence_is_repaired_not_rejected():
    prompt, problem = parse_update(
        "<IMPROVED_VARIABLE>Count carefully.</IMPROVED_VARIABLE>", OBJECTIVE, 1000
    )
    assert (prompt, problem) == (f"Count carefully.\n{FMT}", "")


def test_a_format_sentence_without_its_period_is_not_kept_twice():
    # keeps_format ignored the final period but the removal needed it: the format came twice.
    reply = f"<IMPROVED_VARIABLE>Count carefully. {FMT.rstrip('.')}</IMPROVED_VARIABLE>"
    prompt, _ = parse_update(reply, OBJECTIVE, 1000)
    assert prompt == f"Count carefully.\n{FMT}" and prompt.count("following format") == 1


def test_a_partial_restatement_of_the_format_goes_too():
    text = "Count carefully. The last line of your response should be 'Answer: 3'.\nList items."
    assert repairs.strip_format(text, [FMT]) == "Count carefully.\nList items."


@pytest.mark.parametrize(
    "reply, span, truncated",
    [
        ("put it between <T> and </T>: <T>real</T>", "real", False),
        ("<T>first</T> then <T>cut off", "first", True),
        ("no tags", None, False),
    ],
)
def test_last_tagged_takes_the_last_complete_span(reply, span, truncated):
    assert repairs.last_tagged(reply, "T") == (span, truncated)


def test_sentences_naming_the_batch_items_are_dropped_general_ones_stay():
    batch = [Example("I have two pianos and two peaches. How many fruits do I have?", "2", "t")]
    specific = {"pianos", "peaches"}
    assert specific <= set(LocalTrainer._specific(_trainer(), _attempts(batch), "Count."))
    body = (
        "Count only the items of the asked kind. The two pianos and two peaches are separate.\n"
        "1. Add the quantities."
    )
    kept, dropped = repairs.drop_specific(body, specific)
    assert kept == "Count only the items of the asked kind.\n1. Add the quantities."
    assert dropped == ["The two pianos and two peaches are separate."]
    # a sentence the prompt already had is not new: never dropped
    assert repairs.drop_specific(body, specific, before=body)[1] == []


def test_a_rewrite_made_only_of_specific_rules_is_rejected_with_the_reason():
    rewrite = repairs.parse_rewrite(
        "<IMPROVED_VARIABLE>Remember the peaches.</IMPROVED_VARIABLE>", [FMT], specific={"peaches"}
    )
    assert rewrite.body is None and "named the batch" in rewrite.problem


# -- selection -----------------------------------------------------------------------------------


def _trainer(llm=None, **kw) -> LocalTrainer:
    llm = llm or scripted_engine(lambda m: toy_responder(m, targets=TARGETS))
    config = TrainConfig(**{"batch_size": 3, **kw})
    return LocalTrainer(llm, llm, OBJECTIVE, TASK.train, TASK.val, config, seed="s")


def _attempts(examples):
    from fedtextgrad.textgrad import Attempt

    return [Attempt(ex, "Answer: 0", "0", 0.0) for ex in examples]


def candidates_world(good_seed: int | None):
    """Rewrites differ by sampling seed (the greedy one has none); only the one sampled with
    `good_seed` holds RULE."""

    def responder(messages, *, seed=None):
        if "<CURRENT_PROMPT>" in messages[-1]["content"]:
            body = RULE if seed == good_seed else f"Try idea {seed}."
            return f"<IMPROVED_VARIABLE>{body}\n{FMT}</IMPROVED_VARIABLE>"
        return toy_responder(messages, targets=TARGETS)

    return scripted_engine(responder)


def test_select_keeps_the_best_of_the_candidates_scored_on_batch_and_holdout():
    async def main():
        trainer = _trainer(candidates_world(good_seed=2), candidates=3, holdout=4)
        assert len(trainer.holdout) == 4 and len(trainer.train_set) == 8
        held = {ex.input for ex in trainer.holdout}
        assert not any(ex.input in held for b in trainer.batches(1, 6) for ex in b)
        result = await trainer.train(TASK.initial_prompt, steps=1)
        step = result.steps[0]
        assert step.accepted and step.candidates == 3 and RULE in result.prompt
        assert step.reason == "accepted: batch+holdout accuracy 0.00 -> 1.00 (best of 3)"
        assert result.accuracy_after == 1.0

    asyncio.run(main())


def test_select_reverts_when_no_candidate_beats_the_prompt_by_the_margin():
    async def main():
        result = await _trainer(candidates_world(good_seed=-1), candidates=2).train(
            TASK.initial_prompt, steps=1
        )
        step = result.steps[0]
        assert not step.accepted and step.outcome == "reverted"
        assert result.prompt == TASK.initial_prompt

    asyncio.run(main())


def test_past_prompts_and_scores_are_shown_to_the_optimizer_worst_first():
    async def main():
        llm = candidates_world(good_seed=-1)
        await _trainer(llm, candidates=2, history=4).train(TASK.initial_prompt, steps=2)
        updates = [
            r[-1]["content"] for r in llm.backend.requests if "<CURRENT_PROMPT>" in r[-1]["content"]
        ]
        assert "<PAST_PROMPTS>" not in updates[0]
        second = updates[-1]
        assert "<PAST_PROMPTS>" in second and "Score 0.00:" in second

    asyncio.run(main())


def test_the_scored_history_goes_into_the_step_records_and_comes_back_next_round():
    # With one local step a round, a history kept per round was always empty when read.
    async def main():
        llm = candidates_world(good_seed=-1)
        trainer = _trainer(llm, candidates=2, history=4, holdout=4)
        first = await trainer.train(TASK.initial_prompt, steps=1, round_number=1)
        (step,) = first.steps
        assert TASK.initial_prompt in step.scored  # scored on the 4 held-out examples
        await trainer.train(TASK.initial_prompt, steps=1, round_number=2, history=step.scored)
        updates = [
            r[-1]["content"] for r in llm.backend.requests if "<CURRENT_PROMPT>" in r[-1]["content"]
        ]
        assert "<PAST_PROMPTS>" not in updates[0]
        assert "<PAST_PROMPTS>" in updates[-1] and "Score 0.00:" in updates[-1]

    asyncio.run(main())


def test_no_holdout_when_the_data_cannot_spare_it():
    small = LocalTrainer(None, None, OBJECTIVE, TASK.train[:5], [], TrainConfig(holdout=4), "s")
    assert small.holdout == [] and len(small.train_set) == 5


# -- the paper's step ----------------------------------------------------------------------------


def test_the_paper_step_gives_two_hop_feedback_on_every_example_and_uses_the_batch_gate():
    async def main():
        llm = scripted_engine(lambda m: toy_responder(m, targets=TARGETS))
        config = TrainConfig(method="paper", batch_size=3, momentum=2)
        trainer = LocalTrainer(llm, llm, OBJECTIVE, TASK.train, TASK.val, config, seed="s")
        assert trainer.holdout == [] and config.resolved_gate == "batch"
        result = await trainer.train(TASK.initial_prompt, steps=1)
        step = result.steps[0]
        assert llm.usage.by_purpose["feedback"].calls == 6  # 3 examples x 2 hops
        assert llm.usage.by_purpose["update"].calls == 1
        assert step.accepted and step.reason.startswith("accepted: batch accuracy 0.00 -> 1.00")
        assert RULE in result.prompt and result.prompt.endswith(FMT)

    asyncio.run(main())


def test_the_paper_momentum_shows_past_values_of_the_prompt():
    async def main():
        seen = []

        def responder(messages):
            user = messages[-1]["content"]
            seen.append(user)
            if "<VARIABLE>" in user:
                n = sum("<VARIABLE>" in s for s in seen)
                return f"<IMPROVED_VARIABLE>Version {n}.\n{FMT}</IMPROVED_VARIABLE>"
            return "Answer: 999"

        llm = scripted_engine(responder)
        config = TrainConfig(method="paper", gate="none", batch_size=3, momentum=2)
        trainer = LocalTrainer(llm, llm, OBJECTIVE, TASK.train, TASK.val, config, seed="s")
        await trainer.train(TASK.initial_prompt, steps=3)
        updates = [s for s in seen if "<VARIABLE>" in s]
        assert "<PAST_VALUES>" not in updates[0]
        assert "<PAST_VALUES>" in updates[2] and "Version 1." in updates[2]
        assert TASK.initial_prompt in updates[2]  # two past values: the initial and version 1

    asyncio.run(main())


# -- statistics ----------------------------------------------------------------------------------


def test_paired_interval_and_mcnemar_agree_with_scipy():
    rng = random.Random(1)
    before = [float(rng.random() < 0.3) for _ in range(100)]
    after = [float(rng.random() < 0.45) for _ in range(100)]
    result = paired(before, after, seed=3)
    diff = np.array(after) - np.array(before)
    expected = scipy_stats.bootstrap(
        (diff,), np.mean, n_resamples=10_000, method="percentile", rng=np.random.default_rng(3)
    ).confidence_interval
    assert (result.low, result.high) == pytest.approx((expected.low, expected.high))
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    assert (result.wins, result.losses) == (wins, losses)
    assert result.p_value == pytest.approx(scipy_stats.binomtest(wins, wins + losses).pvalue)
    assert result.diff == pytest.approx(diff.mean())


def test_known_mcnemar_value_and_the_line_people_read():
    # 10 wins, 2 losses, 88 ties: exact two-sided binomial p = 0.03857...
    before = [0.0] * 10 + [1.0] * 2 + [1.0] * 44 + [0.0] * 44
    after = [1.0] * 10 + [0.0] * 2 + [1.0] * 44 + [0.0] * 44
    result = paired(before, after)
    assert result.p_value == pytest.approx(0.038574, abs=1e-5)
    assert result.describe().startswith("test 0.46 -> 0.54 (+8 pts, 95% CI +")
    assert result.describe().endswith(", n=100)") and result.significant


def test_no_difference_gives_a_zero_width_interval_and_p_one():
    result = paired([1.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    assert (result.low, result.high, result.p_value) == (0.0, 0.0, 1.0)
    assert result.describe() == "test 0.67 -> 0.67 (0 pts, 95% CI 0..0, n=3)"


def test_pooling_seeds_averages_each_example_then_resamples_examples():
    a1, b1 = [0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0]
    a2, b2 = [0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]
    result = pooled([(a1, b1), (a2, b2)])
    assert result.runs == 2 and result.n == 4 and result.diff == pytest.approx(0.25)
    assert result.describe().endswith("n=4, 2 seeds)")
    with pytest.raises(ValueError):
        paired([1.0], [1.0, 0.0])


def test_the_pooled_interval_holds_the_variance_between_seeds():
    # One seed found a prompt that wins every example, the other found nothing: averaging the
    # seeds first would claim +0.5 with no uncertainty at all.
    n = 50
    result = pooled([([0.0] * n, [1.0] * n), ([0.0] * n, [0.0] * n)])
    assert result.diff == pytest.approx(0.5)
    assert result.low == pytest.approx(0.0) and result.high == pytest.approx(1.0)
    assert not result.significant


def test_runs_on_other_test_examples_are_not_pooled():
    with pytest.raises(ValueError, match="same test examples"):
        pooled([([0.0, 1.0], [1.0, 1.0]), ([0.0], [1.0])])


# -- review fixes ---------------------------------------------------------------------------------


def test_accuracy_after_is_none_when_no_gate_scored_the_kept_prompt():
    # It was the old prompt's batch score with no gate and a validation score with that gate.
    async def main():
        for gate in ("none", "validation"):
            result = await _trainer(gate=gate, candidates=1).train(TASK.initial_prompt, steps=1)
            assert result.steps[0].accepted and result.accuracy_after is None, gate

    asyncio.run(main())


def test_evaluation_honours_the_llm_judge_loss(tmp_path):
    from fedtextgrad.config import load_config
    from fedtextgrad.experiment import run_async
    from fedtextgrad.federated import Engines

    def judge_says_correct(messages):
        if made_from(messages[-1]["content"], templates.JUDGE):
            return "CORRECT"
        return "Answer: 999"  # wrong by exact match

    cfg = load_config(
        {
            "task": {"name": "bbh_object_counting", "train_size": 4},
            "train": {"loss": "llm_judge", "local_steps": 1, "batch_size": 2},
            "federation": {"clients": 1, "rounds": 1},
            "eval": {"val_size": 2, "test_size": 2},
            "llm": {"cache": False},
        }
    )
    llm = scripted_engine(judge_says_correct)
    results = asyncio.run(run_async(cfg, tmp_path, engines=Engines(llm, llm, llm)))
    assert results.data["initial"]["test_accuracy"] == 1.0  # graded by the judge, as in training


def test_a_report_pools_only_runs_tested_on_the_same_examples(tmp_path):
    from fedtextgrad import record
    from fedtextgrad.report.data import Run, Setting

    def run(seed: int, examples: str) -> Run:  # only the fields pooling reads
        initial = record.Initial.model_construct(test_scores=[0.0, 1.0], test_examples=examples)
        final = record.Final.model_construct(test_scores=[1.0, 1.0])
        results = record.Run.model_construct(status="complete", initial=initial, final=final)
        return Run(tmp_path, results, {}, seed)

    assert Setting({}, [run(0, "abc"), run(1, "abc")]).paired().runs == 2
    assert Setting({}, [run(0, "abc"), run(1, "xyz")]).paired() is None
