"""What a run will cost, from its config alone (`fedtextgrad run --dry-run`): no engine is called.

Calls follow the schedule of the step and the round, with every minibatch answer wrong (feedback
on each example) and the `Rates` at which the optimizer's rewrites are asked again or survive to
the gate; a run that learns makes fewer calls. Tokens are rough: 4 characters a token, a learned
prompt of 500 characters, every reply at its max_tokens (so they err high, as a budget should)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fedtextgrad.config import ExperimentConfig
from fedtextgrad.federated.aggregators import route_tokens, route_words
from fedtextgrad.federated.prepare import FederatedData, sample_clients

CHARS_PER_TOKEN = 4
CALL_TOKENS = 30  # a chat template's role markers and separators
REQUEST_CHARS = 1500  # the text a feedback, update or merge request adds to the prompt it carries
GROWN_PROMPT_CHARS = 500  # a learned prompt's length (measured on instruction induction, 2026-12)


@dataclass(frozen=True)
class Rates:
    """How a feedback model's rewrites fare. The defaults were measured with the embedded 1.5B
    model on instruction induction (2026-12): a tiny run and a 3-client learning run."""

    retried: float = 0.6  # rewrites asked for again (a copy of the current prompt, sampled)
    scored: float = 0.4  # proposals that are distinct and usable, so the gate scores them


@dataclass
class Estimate:
    rounds: int
    clients: list[list[int]]  # sampled per round
    calls: Counter = field(default_factory=Counter)  # per purpose (fractions: expected values)
    tokens: Counter = field(default_factory=Counter)
    # Progress marks, in calls: done after the initial evaluation and after each round, and
    # one local step's share of its round (a progress display advances by these).
    after_initial: float = 0.0
    after_round: list[float] = field(default_factory=list)
    per_step: list[float] = field(default_factory=list)

    @property
    def total_calls(self) -> float:
        return sum(self.calls.values())

    def add(self, purpose: str, calls: float, request_chars: float, max_tokens: int) -> None:
        self.calls[purpose] += calls
        per_call = CALL_TOKENS + request_chars / CHARS_PER_TOKEN + max_tokens
        self.tokens[purpose] += round(calls * per_call)

    def cost(self, price_per_mtok: float | None) -> float | None:
        return None if price_per_mtok is None else sum(self.tokens.values()) * price_per_mtok / 1e6


def estimate(config: ExperimentConfig, data: FederatedData, rates: Rates = Rates()) -> Estimate:
    fed, tr, ev = config.federation, config.train, config.eval
    initial, text = len(data.objective.initial_prompt), _mean_chars(data)
    val, test = len(data.val), len(data.test)
    sampled = [sample_clients(config, r) for r in range(1, fed.rounds + 1)]
    est = Estimate(fed.rounds, sampled)
    est.add("evaluation", val, initial + text, tr.forward_max_tokens)  # the initial prompt
    est.add("test", test, initial + text, tr.forward_max_tokens)
    est.after_initial = est.total_calls
    prompt = max(initial, GROWN_PROMPT_CHARS)  # from the first step on
    for clients in sampled:
        start = est.total_calls
        for client in clients:
            _client_round(est, config, data, client, prompt, text, rates)
        est.per_step.append((est.total_calls - start) / (len(clients) * tr.local_steps))
        _server_round(est, config, len(clients), prompt + text, val)
        est.after_round.append(est.total_calls)
    est.add("test", test, prompt + text, tr.forward_max_tokens)  # the result
    if ev.uid_metrics:
        est.add("metrics", fed.rounds + 1, prompt, 0)
    return est


def _client_round(est, config, data, client: int, prompt: int, text: float, rates: Rates) -> None:
    tr = config.train
    batch, request = tr.batch_size, REQUEST_CHARS + prompt + text
    train = len(data.client_train[client])
    holdout = tr.holdout if tr.resolved_gate == "select" and train >= tr.holdout + batch else 0
    proposals = {"ours": tr.candidates + tr.induce, "paper": 1, "induce": 1}[tr.method]
    candidates = max(1.0, proposals * rates.scored)
    scored = {
        "select": (1 + candidates) * (batch + holdout),
        "batch": candidates * batch,
        "validation": (1 + candidates) * len(data.client_val[client][: tr.gate_val_size]),
        "none": 0,
    }[tr.resolved_gate]
    hops = {"ours": 1, "paper": 2, "induce": 0}[tr.method]
    for _ in range(tr.local_steps):
        est.add("forward", batch, prompt + text, tr.forward_max_tokens)
        est.add("feedback", hops * batch, request, tr.feedback_max_tokens)
        est.add("update", proposals * (1 + rates.retried), request, tr.update_max_tokens)
        est.add("gate", scored, prompt + text, tr.forward_max_tokens)
    if config.privacy.sanitize == "rules+llm":
        est.add("sanitize", 1, request, tr.update_max_tokens)


def _server_round(est, config, uploads: int, answer_chars: float, val: int) -> None:
    """answer_chars: a forward request's (the prompt and an example)."""
    fed, answer = config.federation, config.train.forward_max_tokens
    if fed.aggregation == "retain":  # a routing request per upload: a short paragraph each
        words = route_words(round(answer_chars / 6), [1] * uploads)[0]  # ~6 characters a word
        est.add("aggregation", uploads, REQUEST_CHARS + answer_chars, route_tokens(words))
    elif fed.aggregation != "concat":  # an LLM merge
        merge = REQUEST_CHARS + uploads * answer_chars
        est.add("aggregation", 1, merge, max(1024, round(merge / 3)))
    if fed.aggregation in ("select", "retain"):  # every upload and the merge, on validation
        est.add("aggregation", (uploads + 1) * val, answer_chars, answer)
    if fed.aggregation == "retain":  # a task lost: the repaired merge and the concatenation too
        est.add("aggregation", 2 * val, answer_chars, answer)
    if config.defense.enabled:
        est.add("defense", uploads * val, answer_chars, answer)
    est.add("evaluation", val, answer_chars, answer)  # the new global prompt


def _mean_chars(data: FederatedData) -> float:
    examples = data.val + data.test + [ex for part in data.client_train for ex in part]
    return sum(len(ex.input) for ex in examples) / max(1, len(examples))
