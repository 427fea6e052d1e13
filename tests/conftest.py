"""Shared fixtures. Real-model tests use the embedded 0.5B model (mark them `model`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedtextgrad.llm import LLMSettings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def llm_settings(tmp_path: Path) -> LLMSettings:
    """Engine settings with a response cache private to the test."""
    return LLMSettings(cache_dir=str(tmp_path / "cache"), n_parallel=4, n_ctx=4096)
