"""The requests of the paper's method (TextGrad's step as FedTextGrad runs it), in our own words.

What each asks for follows TextGrad and the paper's code (docs/method.md maps them row by row):
the gradient is two hops (feedback on each response given its evaluation, then feedback on the
system prompt given the conversation it took part in and that response feedback), every example
of the batch gets feedback, the update (TGD) sees the role, the value, the context with its
feedback, a format constraint and, as momentum, the variable's past values."""

SYSTEM = (
    "You are one part of a system that improves text variables through criticism. When asked for "
    "feedback you only criticize: you say how the variable could serve its objective better, and "
    "you never write a new version of it."
)

# Hop 1: the loss (exact-match evaluation) back to the response.
RESPONSE_FEEDBACK = """\
The variable is the response of a language model to a question.

<QUESTION>
{question}
</QUESTION>

<RESPONSE>
{response}
</RESPONSE>

The response was evaluated against the correct answer, {target}: the evaluation is {verdict} \
(1 = correct, 0 = wrong).

Give feedback on the response: how could it be changed to improve its evaluation?"""

# Hop 2: the response's feedback back through the call to the system prompt.
PROMPT_FEEDBACK = """\
The variable is the {role}. It was used in the conversation below.

<CONVERSATION>
<SYSTEM_PROMPT>
{prompt}
</SYSTEM_PROMPT>
<QUESTION>
{question}
</QUESTION>
<RESPONSE>
{response}
</RESPONSE>
</CONVERSATION>

The response received this feedback:
<RESPONSE_FEEDBACK>
{response_feedback}
</RESPONSE_FEEDBACK>

Give feedback on the variable: how could the system prompt be changed so that responses \
like this one improve as the feedback asks?"""

# One example's part of the update's context.
CONTEXT = """\
<EXAMPLE>
<QUESTION>
{question}
</QUESTION>
<RESPONSE>
{response}
</RESPONSE>
<FEEDBACK>
{feedback}
</FEEDBACK>
</EXAMPLE>"""

UPDATE_SYSTEM = (
    "You are the optimizer of a system that improves text variables. You receive a variable, "
    "its role, and feedback on it in context, and you write an improved variable. You reply "
    "with the improved variable between <IMPROVED_VARIABLE> and </IMPROVED_VARIABLE>, nothing "
    "else inside the tags."
)

UPDATE = """\
Role of the variable: {role}.

<VARIABLE>
{prompt}
</VARIABLE>

Its use on a batch of questions, and the feedback it received there:
<CONTEXT>
{context}
</CONTEXT>
{momentum}
Constraint: keep the answer-format instruction unchanged: {answer_format}

Improve the variable according to the feedback. Reply with the improved variable between \
<IMPROVED_VARIABLE> and </IMPROVED_VARIABLE>."""

MOMENTUM = """
Earlier values of this variable, oldest first (improve on them; do not go back to them):
<PAST_VALUES>
{past}
</PAST_VALUES>
"""

# The paper's merge requests. UID adds exactly one sentence; nothing else differs.
SUMMARIZE = """\
Below is a list of system prompts for a language model. Combine them into one cohesive system \
prompt that preserves all of their original information. Keep the final instruction (the \
answer format) unchanged as the last sentence. Output only the combined prompt.

{prompts}"""

UID_SENTENCE = (
    "Apply the principles of Uniform Information Density: spread the information evenly over "
    "the prompt."
)
