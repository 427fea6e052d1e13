"""Reliability and security: malicious clients, server-side defenses, and a fault-injecting
OpenAI-compatible endpoint for drills and tests (docs/robustness.md)."""

from fedtextgrad.robustness.attacks import (
    ATTACKS,
    INJECTION,
    MaliciousClient,
    as_attacker,
    tamper,
)
from fedtextgrad.robustness.defenses import Defense, injected_instruction

__all__ = [
    "ATTACKS",
    "INJECTION",
    "Defense",
    "FaultServer",
    "MaliciousClient",
    "injected_instruction",
    "tamper",
    "as_attacker",
]


def __getattr__(name: str):
    # Imported on first use, so `python -m fedtextgrad.robustness.fault_server` runs cleanly.
    if name == "FaultServer":
        from fedtextgrad.robustness.fault_server import FaultServer

        return FaultServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
