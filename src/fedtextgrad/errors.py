"""The errors users see: each a single line that names the problem and the fix.

    FedTextGradError          anything the CLI tells in one line (exit status 1)
    ├── ConfigError           a setting, config file or sweep file that cannot work (2)
    ├── DataError             a task file, data directory or partition that cannot be used (3)
    ├── EngineError           a model endpoint or the embedded model failed (4)
    │   └── TransientEngineError   worth retrying: timeouts, 429, 5xx (llm/base.py)
    └── RunStateError         a run directory that cannot be used as asked: in use, another
                              run's, damaged, or changed since the run started (5)

`code` names the kind in machine-readable form, `exit_status` is what the CLI exits with."""

import re
import sys
from typing import NoReturn

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class FedTextGradError(Exception):
    """A user-facing failure. The CLI prints ``str(error)`` on one line and exits non-zero."""

    code = "error"
    exit_status = 1

    def __str__(self) -> str:
        # One line whatever input the message quotes: newlines and other controls show escaped.
        return _CONTROL.sub(lambda match: repr(match.group())[1:-1], super().__str__())


class ConfigError(FedTextGradError):
    code, exit_status = "config", 2


class DataError(FedTextGradError):
    code, exit_status = "data", 3


class EngineError(FedTextGradError):
    """A failure of an LLM endpoint that retrying will not fix (bad key, bad request, no model)."""

    code, exit_status = "engine", 4


class RunStateError(FedTextGradError):
    code, exit_status = "run_state", 5


def fail(message: str, exit_status: int = 1) -> NoReturn:
    """What every command line does with an error: one line on stderr, secrets redacted, then
    exit with the error's status."""
    from fedtextgrad.redaction import redact  # a leaf module; here only when failing

    print(f"error: {redact(message)}", file=sys.stderr)
    sys.exit(exit_status)
