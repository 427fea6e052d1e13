"""Surprisal statistics on hand-made log-probabilities (the arithmetic), and on the real model."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from helpers.models import SMALL_MODEL
from typer.testing import CliRunner

from fedtextgrad.cli import app
from fedtextgrad.llm import TokenLogprob, open_engine
from fedtextgrad.metrics import DensityProfile, measure, profile_from_logprobs

KNOWN_TEXT = (
    "You will answer a reasoning question. Think step by step. The last line of your response "
    "should be of the following format: 'Answer: $VALUE' where VALUE is a numerical value."
)


def pairs(*items: tuple[str, float]) -> list[TokenLogprob]:
    """Tokens with their probabilities (converted to natural-log log-probs)."""
    return [TokenLogprob(token, math.log(p)) for token, p in items]


def test_surprisal_is_in_bits_and_the_statistics_follow():
    profile = profile_from_logprobs(
        pairs((" is", 0.5), (" short", 0.25), (".", 1.0), (" Two", 0.125), ("!", 0.5))
    )
    assert profile.surprisals == pytest.approx([1, 2, 0, 3, 1])
    assert profile.length == 6  # the unscored first token counts in the length
    assert profile.mean == pytest.approx(7 / 5)
    assert profile.variance == pytest.approx(sum((s - 1.4) ** 2 for s in [1, 2, 0, 3, 1]) / 5)
    assert profile.max == pytest.approx(3)
    assert profile.total == pytest.approx(7)
    sentences = profile.sentences()
    assert [s["text"] for s in sentences] == ["is short.", "Two!"]
    assert [s["mean"] for s in sentences] == pytest.approx([1.0, 2.0])
    assert profile.sentence_variance == pytest.approx(0.25)
    summary = profile.summary()
    assert summary["sentence_means"] == [1.0, 2.0] and summary["unit"] == "bits"
    assert len(profile.to_dict()["surprisals"]) == 5


def test_line_breaks_end_sentences_and_blank_fragments_are_dropped():
    profile = profile_from_logprobs(
        pairs((" one", 0.5), ("\n", 0.5), ("\n", 0.5), ("two", 0.5), (" words", 0.5))
    )
    assert [s["text"] for s in profile.sentences()] == ["one", "two words"]
    assert profile.sentence_spans() == [(0, 2), (3, 5)]


def test_uniform_text_has_zero_variance_and_empty_text_is_harmless():
    flat = profile_from_logprobs(pairs(*[(f" w{i}", 0.25) for i in range(8)]))
    assert flat.variance == 0.0 and flat.sentence_variance == 0.0 and flat.mean == 2.0
    empty = DensityProfile([], [], 1)
    assert empty.summary()["mean"] == 0.0 and empty.sentences() == []


def test_a_non_finite_log_probability_is_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        profile_from_logprobs([TokenLogprob(" x", float("-inf"))])


def test_uid_command_rejects_a_missing_or_empty_file(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["uid", str(tmp_path / "absent.txt")])
    assert result.exit_code != 0 and "prompt file not found" in str(result.exception)
    (tmp_path / "empty.txt").write_text("  \n")
    result = runner.invoke(app, ["uid", str(tmp_path / "empty.txt")])
    assert "is empty" in str(result.exception)


@pytest.mark.model
def test_metrics_of_a_known_text_under_the_real_model_are_finite_and_repeatable(llm_settings):
    async def twice():
        llm = open_engine(SMALL_MODEL, llm_settings)
        try:
            first = await measure(llm, KNOWN_TEXT)
            second = await measure(llm, KNOWN_TEXT)  # from the response cache
            return first, second, llm.usage.total(), await llm.count_tokens(KNOWN_TEXT)
        finally:
            await llm.aclose()

    first, second, usage, length = asyncio.run(twice())
    assert first.length == length and len(first.surprisals) == length - 1
    assert all(math.isfinite(s) and s >= 0 for s in first.surprisals)
    assert "".join(first.tokens) in KNOWN_TEXT and KNOWN_TEXT.endswith("".join(first.tokens))
    assert 0 < first.mean < first.max and first.variance > 0
    assert [s["text"] for s in first.sentences()][1] == "Think step by step."
    assert len(first.sentences()) == 3
    assert second == first and usage.cache_hits == 1
    # An instruction the model expects is less surprising than the same words shuffled.
    shuffled = " ".join(reversed(KNOWN_TEXT.split()))

    async def scrambled():
        llm = open_engine(SMALL_MODEL, llm_settings)
        try:
            return await measure(llm, shuffled)
        finally:
            await llm.aclose()

    assert asyncio.run(scrambled()).mean > first.mean


@pytest.mark.model
@pytest.mark.slow
def test_uid_command_prints_the_statistics_and_json(tmp_path, llm_settings, monkeypatch):
    monkeypatch.setenv("FEDTEXTGRAD_CACHE", llm_settings.cache_dir)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Count the items. Then answer.\n")
    runner = CliRunner()
    result = runner.invoke(app, ["uid", str(prompt), "--engine", SMALL_MODEL, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["length_tokens"] == len(data["surprisals"]) + 1
    assert len(data["sentence_means"]) == 2 and data["unit"] == "bits"
    result = runner.invoke(app, ["uid", str(prompt), "--engine", SMALL_MODEL])
    assert result.exit_code == 0 and "surprisal mean" in result.output
    assert "Then answer." in result.output
