"""The textual-gradient core: one step as small functions, and the local trainer."""

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
    tidy,
    update,
)
from fedtextgrad.textgrad.trainer import LocalTrainer, StepRecord, TrainResult

__all__ = [
    "Attempt",
    "LocalTrainer",
    "Objective",
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
