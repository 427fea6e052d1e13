"""Split a task's examples among federated clients: IID, label-skewed or quantity-skewed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from fedtextgrad.errors import ConfigError
from fedtextgrad.tasks.base import Example

METHODS = ("iid", "dirichlet", "quantity")


def partition(
    examples: Sequence[Example],
    n_clients: int,
    *,
    method: str = "iid",
    alpha: float = 1.0,
    seed: int = 0,
) -> list[list[Example]]:
    """Every example goes to exactly one client; every client gets at least one example.

    iid: shuffle, then n // k per client with the remainder on the last (the paper's split).
    dirichlet: for each `Example.key` group, client shares ~ Dirichlet(alpha); small alpha
    gives each client few keys, large alpha approaches IID.
    quantity: client sizes ~ Dirichlet(alpha), examples themselves IID.
    """
    _check(len(examples), n_clients, method, alpha)
    rng = np.random.default_rng(seed)
    if method == "iid":
        base = len(examples) // n_clients
        sizes = [base] * (n_clients - 1) + [len(examples) - base * (n_clients - 1)]
        return _cut(examples, rng.permutation(len(examples)), sizes)
    if method == "quantity":
        sizes = _dirichlet_sizes(len(examples) - n_clients, n_clients, alpha, rng) + 1
        return _cut(examples, rng.permutation(len(examples)), sizes.tolist())
    return _by_key(examples, n_clients, alpha, rng)


def _check(n_examples: int, n_clients: int, method: str, alpha: float) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown partition method '{method}': use one of {', '.join(METHODS)}")
    if n_clients < 1 or n_clients > n_examples:
        raise ConfigError(
            f"cannot split {n_examples} examples among {n_clients} clients: "
            f"use between 1 and {n_examples} clients"
        )
    if method != "iid" and not alpha > 0:
        raise ConfigError(f"alpha is {alpha}: use a positive Dirichlet concentration")


def _dirichlet_sizes(
    total: int, n_clients: int, alpha: float, rng: np.random.Generator
) -> np.ndarray:
    """Integer sizes summing to `total` with Dirichlet(alpha) proportions (largest remainder)."""
    shares = rng.dirichlet(np.full(n_clients, alpha)) * total
    sizes = np.floor(shares).astype(int)
    leftover = total - sizes.sum()
    sizes[np.argsort(sizes - shares, kind="stable")[:leftover]] += 1
    return sizes


def _cut(examples: Sequence[Example], order: np.ndarray, sizes: list[int]) -> list[list[Example]]:
    parts = np.split(order, np.cumsum(sizes)[:-1])
    return [[examples[i] for i in part] for part in parts]


def _by_key(
    examples: Sequence[Example], n_clients: int, alpha: float, rng: np.random.Generator
) -> list[list[Example]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        groups[example.key].append(index)
    clients: list[list[int]] = [[] for _ in range(n_clients)]
    for key in sorted(groups):
        members = rng.permutation(groups[key])
        sizes = _dirichlet_sizes(len(members), n_clients, alpha, rng)
        for client, part in zip(clients, np.split(members, np.cumsum(sizes)[:-1]), strict=True):
            client.extend(part.tolist())
    _fill_empty(clients, rng)
    return [[examples[i] for i in rng.permutation(client)] for client in clients]


def _fill_empty(clients: list[list[int]], rng: np.random.Generator) -> None:
    """Move one random example from the largest client to each empty one (a client must train)."""
    for client in clients:
        if not client:
            donor = max(clients, key=len)
            client.append(donor.pop(int(rng.integers(len(donor)))))
