"""The words we say to the models. Small models learn only from concrete, contrastive feedback:
show the wrong answer next to the right one and ask for a general rule that prevents the error."""

from collections.abc import Sequence

FEEDBACK_SYSTEM = (
    "You are a careful teacher who reviews how a system prompt made a language model fail. "
    "You write feedback only: you never rewrite the prompt yourself."
)

FEEDBACK = """\
The text below is the {role}.

<SYSTEM_PROMPT>
{prompt}
</SYSTEM_PROMPT>

Under this system prompt the model was asked:
<QUESTION>
{question}
</QUESTION>

It responded:
<RESPONSE>
{response}
</RESPONSE>

Its final answer was {answer}, but the correct answer is {target}.

Reply in exactly this form:
Solution: <the correct solution in a few short steps that reach {target}>
Mistake: <one sentence naming the step where the response went wrong>
Instruction: <one general, concrete instruction for the system prompt that would prevent this \
kind of mistake on any similar question; do not mention the items or numbers of this question>"""

UPDATE_SYSTEM = (
    "You improve system prompts for a language model. You follow the output format exactly."
)

UPDATE = """\
Here is the {role}:

<CURRENT_PROMPT>
{prompt}
</CURRENT_PROMPT>

With this prompt the model got {wrong} of {total} training questions wrong. Feedback on its mistakes:

<FEEDBACK>
{feedback}
</FEEDBACK>
{memory}
Write an improved system prompt that keeps what already works and adds short, general, concrete \
instructions that fix these mistakes: first the task description, then at most five numbered \
rules, then the answer-format sentence.
Rules:
{rules}
Reply with the improved prompt only, between <IMPROVED_VARIABLE> and </IMPROVED_VARIABLE>."""

# Ours: instruction induction (APE's request, Zhou et al. 2023, in our words). Feedback on
# single mistakes patches a prompt; when the prompt does not say what the task is, only several
# input -> expected output pairs seen together reveal it. The current prompt is not shown: the
# induced instruction is a fresh candidate, and the gate compares it with the current prompt.
INDUCE = """\
A language model was given each input below and should have replied with the expected output.

{pairs}

Work out the single instruction that turns every input into its expected output. Write it as \
the {role}: the instruction, stated so that it works for any input of this kind, then at most \
three short rules if they are needed, then the answer-format sentence.
Rules:
{rules}
Reply with the system prompt only, between <IMPROVED_VARIABLE> and </IMPROVED_VARIABLE>."""

INDUCE_PAIR = "Input: {input}\nExpected output: {target}"

# The rules of the update request, one per line after "- " ({rules} above). Small models copy
# them into the prompt they write; `update_rules` lets the parser recognise and drop them.
UPDATE_RULES = (
    "Keep it under {max_words} words.",
    "Do not copy questions, numbers, names or answers from the examples: state general rules.",
)
FORMAT_RULE = "The last sentence must be exactly:"


def update_rules(max_words: int, extra: Sequence[str] = ()) -> list[str]:
    return [rule.format(max_words=max_words) for rule in UPDATE_RULES] + list(extra)


def rules_block(rules: Sequence[str], answer_format: str) -> str:
    """The {rules} of UPDATE: one "- " line per rule, the answer-format rule last."""
    return "".join(f"- {rule}\n" for rule in [*rules, f"{FORMAT_RULE} {answer_format}"])


UPDATE_MEMORY = """
Feedback from earlier steps (already addressed or still open):
<PAST_FEEDBACK>
{past}
</PAST_FEEDBACK>
"""

# Ours: the best earlier prompts with their scores, worst first (OPRO shows the optimizer its
# trajectory so that it writes a prompt better than the best one, not a variation of the last).
UPDATE_HISTORY = """
Earlier prompts and the share of training questions each got right (worst first):
<PAST_PROMPTS>
{past}
</PAST_PROMPTS>
Write a prompt that would score higher than all of them.
"""


def history_block(history: Sequence[tuple[str, float]]) -> str:
    if not history:
        return ""
    past = "\n\n".join(f"Score {score:.2f}:\n{prompt}" for prompt, score in history)
    return UPDATE_HISTORY.format(past=past)


UPDATE_RETRY = (
    "Important: a previous reply could not be used because {problem}. Reply with the complete, "
    "concise improved prompt between <IMPROVED_VARIABLE> and </IMPROVED_VARIABLE>, ending with "
    "the sentence: {answer_format}"
)

# The UPDATE_RETRY problem of a reply that repeated the current prompt.
COPIED = (
    "it repeated the current prompt unchanged, which fixes none of the mistakes. Change the "
    "prompt: merge similar rules, replace or delete rules that did not prevent these mistakes, "
    "and add the instructions the feedback asks for, keeping at most five numbered rules"
)

COMBINE_FEEDBACK = """\
Below are several pieces of feedback on one system prompt. Merge them into one list of at most \
{max_items} distinct, general, concrete instructions, most important first. Drop duplicates.

{feedback}"""

JUDGE = """\
Question:
{question}

Reference answer: {target}

Model response:
{response}

Is the model's final answer equivalent to the reference answer? Reply with one word: CORRECT or \
INCORRECT."""
