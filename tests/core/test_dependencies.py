"""Every module src/ imports is declared in pyproject.toml ([tool.deptry]): an import that works
only because another package happens to pull its module in would break a fresh install."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_import_of_src_is_a_declared_dependency():
    deptry = shutil.which("deptry", path=str(Path(sys.executable).parent))
    assert deptry, "deptry is in the dev extra: pip install -e '.[dev]'"
    done = subprocess.run([deptry, "src"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
