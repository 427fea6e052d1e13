"""The textual-gradient core: one step as small functions, the paper's variant, the reply
repairs, and the local trainer."""

from fedtextgrad.textgrad.repairs import tidy
from fedtextgrad.textgrad.step import (
    Attempt,
    Objective,
    Update,
    accuracy,
    combine,
    evaluate,
    feedback,
    forward,
    judge,
    parse_update,
    score,
    update,
)
from fedtextgrad.textgrad.trainer import LocalTrainer, Outcome, StepRecord, TrainResult

__all__ = [
    "Attempt",
    "LocalTrainer",
    "Objective",
    "Outcome",
    "StepRecord",
    "TrainResult",
    "Update",
    "accuracy",
    "combine",
    "evaluate",
    "feedback",
    "forward",
    "judge",
    "parse_update",
    "score",
    "tidy",
    "update",
]
