"""The leakage audit: pure functions on text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fedtextgrad.privacy import audit, build_profile, specific_tokens
from fedtextgrad.tasks import Example
from fedtextgrad.tasks.base import NUMBER_PROMPT
from fedtextgrad.text import longest_common_run, sentences, words

GSM = [
    Example(
        "Bridget counted 14 shooting stars in the night sky. Reginald counted two fewer "
        "shooting stars than did Bridget. How many stars did they count?",
        "26",
        "gsm8k",
    ),
    Example("Sarah buys 20 pencils on Monday. How many pencils does Sarah have?", "20", "gsm8k"),
]
GENERAL = NUMBER_PROMPT.replace(
    "Think step by step.", "Think step by step. Write down each quantity before you add them."
)


def brute_force(a, others):
    best = 0
    for other in others:
        for i in range(len(a)):
            for j in range(len(other)):
                k = 0
                while i + k < len(a) and j + k < len(other) and a[i + k] == other[j + k]:
                    k += 1
                best = max(best, k)
    return best


@given(st.text("abc ", max_size=30), st.lists(st.text("abc ", max_size=30), max_size=3))
def test_longest_common_run_matches_brute_force(a, others):
    length, index, start = longest_common_run(a, others)
    assert length == brute_force(a, others)
    if length:
        assert a[start : start + length] in others[index]


def test_longest_common_run_on_words():
    assert longest_common_run(["x", "a", "b", "c"], [["a", "b"], ["b", "c", "a", "b", "c"]]) == (
        3,
        1,
        1,
    )
    assert longest_common_run([], [["a"]]) == (0, -1, -1)


def test_words_and_sentences():
    assert words("Sam's 40,000-foot hill, 3/4 done.") == [
        "sam's",
        "40,000",
        "foot",
        "hill",
        "3/4",
        "done",
    ]
    text = "One. Two!\nThree"
    assert [text[a:b] for a, b in sentences(text)] == ["One.", "Two!", "Three"]


def test_specific_tokens_are_names_numbers_and_rare_words_not_in_the_initial_prompt():
    found = specific_tokens(GSM, NUMBER_PROMPT)
    assert found["bridget"] == found["reginald"] == found["sarah"] == "names"
    assert found["14"] == found["20"] == found["26"] == "numbers"  # targets count too
    assert "stars" not in found and "two" not in found and "count" not in found  # common English
    assert "value" not in found  # in the initial prompt


def test_public_examples_mark_task_vocabulary():
    public = [Example("Sarah has 20 apples.", "20", "gsm8k")]
    found = specific_tokens(GSM, NUMBER_PROMPT, public)
    assert "sarah" not in found and "20" not in found and "bridget" in found


def test_a_general_prompt_does_not_leak_and_a_copied_one_does():
    profile = build_profile(GSM, NUMBER_PROMPT)
    clean = audit(GENERAL, profile)
    assert clean.specific_count == 0 and not clean.leaks(5) and clean.lcs_words < 5
    copied = audit(GENERAL + " E.g. Bridget counted 14 shooting stars in the night sky.", profile)
    assert copied.leaks(5)
    assert copied.specific == {"names": ["bridget"], "numbers": ["14"]}
    assert copied.lcs_words == 9 and copied.lcs_example == 0
    assert copied.shared_ngrams[8] >= 1 and copied.shared_ngrams[3] >= 7
    assert "bridget counted 14 shooting stars" in copied.lcs_text
    record = copied.to_dict()
    assert record["shared_ngrams"]["5"] == copied.shared_ngrams[5]


def test_a_possessive_or_separator_does_not_hide_a_token():
    profile = build_profile(GSM, NUMBER_PROMPT)
    assert audit(GENERAL + " Bridget's stars.", profile).specific == {"names": ["bridget"]}


def test_the_baseline_removes_what_the_server_already_has():
    profile = build_profile(GSM, NUMBER_PROMPT)
    leaky = GENERAL + " Sarah buys 20 pencils on Monday."
    assert audit(leaky, profile).leaks(5)
    assert not audit(leaky, profile, baseline=leaky).leaks(5)


def test_template_ngrams_are_not_counted_as_copies():
    examples = [
        Example(f"I have a {item} and a drum. How many musical instruments do I have?", "2", "t")
        for item in ("flute", "piano", "violin")
    ]
    profile = build_profile(examples, NUMBER_PROMPT)
    found = audit(NUMBER_PROMPT + " How many musical instruments do I have? Count them.", profile)
    assert found.shared_ngrams[5] == 0
