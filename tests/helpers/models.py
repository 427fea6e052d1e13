"""The embedded models the real-model tests use (mark those tests `model`)."""

SMALL_MODEL = "local:qwen2.5-coder-0.5b"
