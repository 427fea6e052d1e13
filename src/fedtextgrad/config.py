"""Experiment configuration: TOML files validated by pydantic, with dotted `--set` overrides.

The key names are a public contract (see README): `seed`, `engines.*`, `task.*`, `train.*`,
`federation.*`, `eval.*`, `llm.*`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fedtextgrad.errors import ConfigError
from fedtextgrad.llm.settings import LLMSettings
from fedtextgrad.redaction import mask_url


class _Section(BaseModel):
    # inf and nan are no setting: they would reach JSON as null, or numpy as an error
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EnginesConfig(_Section):
    forward: str = "local:qwen2.5-coder-1.5b"
    feedback: str | None = Field(None, description="default: the forward engine")
    aggregator: str | None = Field(None, description="default: the feedback engine")

    @property
    def resolved(self) -> dict[str, str]:
        feedback = self.feedback or self.forward
        return {
            "forward": self.forward,
            "feedback": feedback,
            "aggregator": self.aggregator or feedback,
        }


class TaskConfig(_Section):
    name: str | None = Field(None, description="a built-in task or a .json/.jsonl/.csv file")
    names: list[str] | None = Field(None, description="several tasks (heterogeneous setting)")
    data_dir: str | None = Field(None, description="default: $FEDTEXTGRAD_DATA, else generators")
    train_size: int | None = Field(None, ge=1)
    data_seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_way(self) -> TaskConfig:
        if (self.name is None) == (self.names is None):
            raise ValueError("set exactly one of task.name or task.names")
        if self.names is not None and not self.names:
            raise ValueError("task.names is empty")
        return self

    @property
    def all_names(self) -> list[str]:
        return self.names if self.names is not None else [self.name]


class TrainConfig(_Section):
    method: Literal["ours", "paper", "induce"] = Field(
        "ours",
        description="ours, the paper's TextGrad step and merges, or the induce baseline: one "
        "instruction-induction request from the batch's pairs, kept ungated (docs/method.md)",
    )
    batch_size: int = Field(3, ge=1)
    local_steps: int = Field(3, ge=1)
    gate: Literal["select", "none", "batch", "validation"] | None = Field(
        None, description="default: select for ours, batch for the paper's method"
    )
    gate_val_size: int | None = Field(None, ge=1, description="validation gate: examples used")
    candidates: int = Field(3, ge=1, le=16, description="ours: rewrites proposed per step")
    induce: bool = Field(
        True, description="ours: one more candidate, the instruction induced from the batch"
    )
    holdout: int = Field(
        4, ge=0, description="select gate: training examples held out and scored with the batch"
    )
    margin: float = Field(
        0.0, ge=0, le=1, description="select gate: the best candidate must beat the prompt by more"
    )
    history: int = Field(4, ge=0, description="ours: best earlier (prompt, score) pairs shown")
    general_rules: bool = Field(
        True, description="ours: drop rewrite sentences naming the batch's examples"
    )
    momentum: int = Field(
        0, ge=0, description="past steps shown to the update (ours: feedback; paper: values)"
    )
    max_prompt_chars: int = Field(4000, ge=100, description="longer updates are rejected")
    forward_max_tokens: int = Field(512, ge=16)
    feedback_max_tokens: int = Field(256, ge=16)
    update_max_tokens: int = Field(512, ge=16)
    loss: Literal["exact", "llm_judge"] = "exact"
    update_rules: list[str] = Field(
        default_factory=list, description="more rules for the update request, one sentence each"
    )

    @property
    def resolved_gate(self) -> str:
        return self.gate or {"paper": "batch", "induce": "none"}.get(self.method, "select")


class FederationConfig(_Section):
    clients: int = Field(1, ge=1, description="1 = centralized TextGrad")
    rounds: int = Field(1, ge=1)
    sample_fraction: float = Field(1.0, gt=0, le=1)
    partition: Literal["iid", "dirichlet", "quantity", "by_task"] = "iid"
    alpha: float = Field(1.0, gt=0, description="Dirichlet concentration")
    aggregation: Literal["concat", "summarize", "uid_summarize", "select", "retain"] = (
        "uid_summarize"
    )
    acceptance: Literal["improves", "no_worse", "always"] = Field(
        "improves",
        description="broadcast an aggregate only if it scores higher on validation (improves), "
        "not lower (no_worse), or always (the paper)",
    )
    min_clients: int = Field(1, ge=1, description="fewer replies than this: the round is retried")
    round_timeout: float | None = Field(None, gt=0, description="seconds a client may take")
    round_retries: int = Field(1, ge=0)
    attackers: int = Field(0, ge=0, description="malicious clients (the last ids), for experiments")
    attack: Literal["injection", "sabotage", "format", "flood"] = "injection"


class DefenseConfig(_Section):
    """Server-side screening of uploads and acceptance of aggregates (docs/robustness.md)."""

    enabled: bool = Field(False, description="costs one server evaluation per upload and round")
    max_upload_chars: int = Field(8000, ge=100, description="longer uploads are rejected")
    injection_screen: bool = Field(True, description="reject 'ignore previous instructions'")
    validation_margin: float | None = Field(
        0.1, ge=0, le=1, description="reject uploads this far below the global prompt; None: off"
    )
    outlier_mads: float | None = Field(
        3.0, gt=0, description="reject uploads this many MADs less similar to the rest; None: off"
    )
    acceptance: bool = Field(True, description="keep the old prompt if the aggregate scores lower")
    acceptance_margin: float = Field(0.0, ge=0, le=1)


class EvalConfig(_Section):
    val_size: int | None = Field(None, ge=1)
    server_val_size: int | None = Field(
        None,
        ge=1,
        description="the server's own validation examples a task, apart from the clients' "
        "(needs val_size); unset: the server scores on the clients' validation examples",
    )
    test_size: int | None = Field(None, ge=1)
    uid_metrics: bool = Field(
        False, description="record the surprisal profile of every global prompt (forward engine)"
    )


class PrivacyConfig(_Section):
    """Leakage audit, canaries and client-side defenses (docs/privacy.md)."""

    audit: bool = Field(True, description="audit every upload and global prompt (no LLM calls)")
    ngram_sizes: list[int] = Field([3, 5, 8], min_length=1, description="shared n-grams counted")
    copy_ngram: int = Field(5, ge=2, description="a span of this many example words is a copy")
    common_zipf: float = Field(
        4.0, ge=0, le=8, description="words this frequent in English are not example-specific"
    )
    canaries: int = Field(
        0,
        ge=0,
        le=256,
        description="made-up secrets in one client's inputs (canaries.MAX_CANARIES)",
    )
    canary_client: int = Field(0, ge=0)
    instruction_defense: bool = Field(
        False, description="the update is told to write general strategies, never example content"
    )
    sanitize: Literal["off", "rules", "rules+llm"] = "off"
    upload_policy: Literal["off", "block"] = "off"
    max_specific_tokens: int = Field(0, ge=0, description="policy: more new ones are refused")
    max_copied_ngrams: int = Field(0, ge=0, description="policy: more new copies are refused")


class ExperimentConfig(_Section):
    seed: int = Field(0, ge=0, description="numpy's generators take no negative seed")
    engines: EnginesConfig = EnginesConfig()
    task: TaskConfig
    train: TrainConfig = TrainConfig()
    federation: FederationConfig = FederationConfig()
    eval: EvalConfig = EvalConfig()
    llm: LLMSettings = LLMSettings()
    defense: DefenseConfig = DefenseConfig()
    privacy: PrivacyConfig = PrivacyConfig()

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        fed = self.federation
        if fed.min_clients > fed.clients:
            raise ValueError(
                f"federation.min_clients ({fed.min_clients}) exceeds federation.clients ({fed.clients})"
            )
        if fed.attackers > fed.clients:
            raise ValueError(
                f"federation.attackers ({fed.attackers}) exceeds federation.clients ({fed.clients})"
            )
        if self.privacy.canaries and self.privacy.canary_client >= fed.clients:
            raise ValueError(
                f"privacy.canary_client ({self.privacy.canary_client}) is not a client id "
                f"(0..{fed.clients - 1})"
            )
        if fed.partition == "by_task" and fed.clients < len(self.task.all_names):
            raise ValueError("partition 'by_task' needs at least one client per task")
        if self.eval.server_val_size and not self.eval.val_size:
            raise ValueError("eval.server_val_size needs eval.val_size: set both")
        return self

    def public_dict(self) -> dict:
        """The resolved config as written to results (secrets masked: the key, a URL's password)."""
        data = json.loads(self.model_dump_json())
        if data["llm"].get("base_url"):
            data["llm"]["base_url"] = mask_url(data["llm"]["base_url"])
        return data


def same_experiment(stored: dict, config: ExperimentConfig) -> bool:
    """Whether a run's stored config (`public_dict`) is this experiment. Engine plumbing under
    llm.* (timeouts, cache location, keys) may change between attempts of a run; a setting added
    since the run was stored counts at its default."""
    try:  # validated again, so the stored config gains the settings added since, at defaults
        then = ExperimentConfig.model_validate({k: v for k, v in stored.items() if k != "llm"})
    except ValidationError:  # a setting since removed or restricted
        return False
    return _without_llm(then.public_dict()) == _without_llm(config.public_dict())


def _without_llm(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "llm"}


def load_config(source: str | Path | dict, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a TOML file (or a dict), apply `key=value` overrides, and validate."""
    data = dict(source) if isinstance(source, dict) else read_toml(Path(source), "config")
    for override in overrides or []:
        apply_override(data, override)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"invalid config: {describe(error)}") from None


def read_toml(path: Path, what: str) -> dict:
    """A TOML file's data, or one line that says why it cannot be read (`what`: config, sweep)."""
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file: give a TOML {what}") from None
    except RecursionError:
        raise ConfigError(f"{path} nests too deeply to be a {what}") from None
    except ValueError:  # an integer past Python's 4300-digit limit
        raise ConfigError(f"{path} holds a number too large to be a {what}") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None


def apply_override(data: dict, override: str) -> None:
    """`train.local_steps=5` sets data["train"]["local_steps"] = 5 (the value parsed as TOML)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"invalid override '{override}': use key=value, e.g. train.local_steps=5")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string: task.name=bbh_word_sorting
    except (RecursionError, ValueError):  # nested too deeply, or an integer of 4300+ digits
        raise ConfigError(
            f"invalid override '{key.strip()}': its value nests too deeply or is too large"
        ) from None
    set_dotted(data, key.strip(), value)


def set_dotted(data: dict, key: str, value: Any) -> None:
    """data["train"]["local_steps"] = value, for key "train.local_steps"."""
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"invalid override '{key}': '{part}' is not a section")
    node[leaf] = value


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"local_steps": 3}} and {"train.local_steps": 3} both become the latter."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def describe(error: ValidationError) -> str:
    """The first problem pydantic found, as one line: where, and what is wrong."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "config"
    if first["type"] == "extra_forbidden":
        return f"unknown key '{where}' (check the spelling; see configs/ for examples)"
    if first["type"] == "missing":
        return f"missing key '{where}'"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    if not first["loc"]:  # a check across sections names its keys itself
        return f"{message}{more}"
    return f"{where}: {message}{more}"
