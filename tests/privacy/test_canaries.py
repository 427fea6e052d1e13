"""Canaries: deterministic, unique, planted without changing targets, detected in any form."""

from __future__ import annotations

import pytest

from fedtextgrad import FedTextGradError, load_config
from fedtextgrad.privacy import exposed, exposure, make_canaries, plant
from fedtextgrad.privacy.canaries import MAX_CANARIES
from fedtextgrad.tasks import Example


def test_canaries_are_deterministic_and_share_nothing():
    canaries = make_canaries(30, seed=7)
    assert canaries == make_canaries(30, seed=7) and canaries != make_canaries(30, seed=8)
    name_words = [w for c in canaries for w in c.name.lower().split()]
    assert len(set(name_words)) == len(name_words)
    assert len({c.account for c in canaries}) == 30
    for c in canaries:
        others = [o for o in canaries if o is not c]
        assert exposed(c.note, others) == {}  # no canary's note exposes another


def test_planting_appends_a_note_and_keeps_the_targets():
    examples = [Example(f"Question {i}?", str(i), "t") for i in range(3)]
    planted, placed = plant(examples, make_canaries(4, seed=0))
    assert [ex.target for ex in planted] == ["0", "1", "2"]
    assert [c.example for c in placed] == [0, 1, 2, 0]
    assert planted[0].input.startswith("Question 0? (Reference note:")
    assert placed[3].note in planted[0].input and placed[0].note in planted[0].input


def test_exposure_finds_each_part_whatever_its_form():
    canary = make_canaries(1, seed=1)[0]
    first, last = canary.name.split()
    assert exposure(f"Ask {last.upper()} first.", canary) == {
        "name": True,
        "account": False,
        "phrase": False,
    }
    digits = canary.account.replace("-", " ")
    assert exposure(f"Call {digits}.", canary)["account"]
    three = " ".join(canary.phrase.split()[1:]).title()
    assert exposure(f"Remember: {three}!", canary)["phrase"]
    assert exposure("Count every item of the asked kind.", canary) == dict.fromkeys(
        ("name", "account", "phrase"), False
    )


@pytest.mark.parametrize("seed", [0, 3, "x", 10**30])
def test_more_canaries_than_can_be_distinct_fail_at_once_instead_of_looping(seed):
    assert len(make_canaries(MAX_CANARIES, seed=seed)) == MAX_CANARIES
    for count in (MAX_CANARIES + 1, 600, 10**9):  # refused before any search, not after one
        with pytest.raises(FedTextGradError, match=f"cannot make {count} distinct canaries"):
            make_canaries(count, seed=seed)
    with pytest.raises(
        FedTextGradError, match="privacy.canaries: Input should be less than or equal to 256"
    ):
        load_config({"task": {"name": "bbh_object_counting"}, "privacy": {"canaries": 600}})
