"""What travels between the ServerApp and the ClientApps, and the experiment config as text.

Text goes in `ConfigRecord`s (strings; nested data as JSON), numbers for Flower's own tooling in
a `MetricRecord`. A reply carries either the full `ClientUpdate` record or one error line."""

from __future__ import annotations

import json
from collections.abc import Mapping

from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from pydantic import ValidationError

from fedtextgrad.config import ExperimentConfig, load_config
from fedtextgrad.federated.client import ClientFailure, ClientUpdate
from fedtextgrad.record import ClientUpload, first_problem

TRAIN = "train.textgrad"  # handled by @client_app.train("textgrad")
QUERY = "query.partition"  # handled by @client_app.query("partition")

# node_config keys a SuperNode may set for its own host: paths to its files, CPU threads.
NODE_OVERRIDES = {
    "data-dir": ("task", "data_dir", str),
    "cache-dir": ("llm", "cache_dir", str),
    "threads": ("llm", "threads", int),
}


def config_to_text(config: ExperimentConfig) -> str:
    """The config as JSON. The API key stays behind: every host reads its own OPENAI_API_KEY."""
    return config.model_dump_json(exclude={"llm": {"api_key"}})


def config_from_text(
    text: str, node_config: Mapping[str, object] | None = None
) -> ExperimentConfig:
    """The config a process works with: the shipped one, with this node's local paths."""
    data = json.loads(text)
    for key, (section, field, kind) in NODE_OVERRIDES.items():
        if node_config and key in node_config:
            data.setdefault(section, {})[field] = kind(node_config[key])
    return load_config(data)


# -- server → client ------------------------------------------------------------------------------


def train_content(
    client_id: int,
    round_number: int,
    prompt: str,
    local_steps: int,
    history: dict[str, float] | None = None,
) -> RecordDict:
    """The round's instruction to one client, with its own scored history: clients keep no
    state between rounds, so a resumed run hands them what they had."""
    return RecordDict(
        {
            "round": ConfigRecord(
                {
                    "client": client_id,
                    "round": round_number,
                    "local-steps": local_steps,
                    "prompt": prompt,
                    "history": json.dumps(history or {}, ensure_ascii=False),
                }
            )
        }
    )


def read_train(content: RecordDict) -> tuple[int, int, str, int, dict[str, float]]:
    """(client id, round, global prompt, local steps, the client's scored history)."""
    record = content.config_records["round"]
    return (
        int(record["client"]),
        int(record["round"]),
        str(record["prompt"]),
        int(record["local-steps"]),
        json.loads(str(record.get("history", "{}"))),
    )


# -- client → server ------------------------------------------------------------------------------


def update_content(update: ClientUpdate) -> RecordDict:
    upload = update.upload
    return RecordDict(
        {
            "update": ConfigRecord({"record": update.to_record().model_dump_json()}),
            "metrics": MetricRecord(  # Flower's metrics: numbers only (None is left out)
                {
                    key: value
                    for key, value in {
                        "num-examples": upload.num_examples,
                        "accuracy-before": upload.accuracy_before,
                        "accuracy-after": upload.accuracy_after,
                        "seconds": update.seconds,
                    }.items()
                    if value is not None
                }
            ),
        }
    )


def error_content(error: str) -> RecordDict:
    return RecordDict({"error": ConfigRecord({"message": error})})


def read_reply(client_id: int, reply: Message) -> ClientUpdate | ClientFailure:
    """A reply as an outcome: Flower-level errors and our error records become failures."""
    if reply.has_error():
        return ClientFailure(client_id, f"Flower error {reply.error.code}: {reply.error.reason}")
    records = reply.content.config_records
    if "error" in records:
        return ClientFailure(client_id, str(records["error"]["message"]))
    try:
        record = ClientUpload.model_validate_json(str(records["update"]["record"]))
    except ValidationError as error:
        return ClientFailure(client_id, f"malformed reply: {first_problem(error)}")
    except KeyError as error:
        return ClientFailure(client_id, f"malformed reply: no {error}")
    update = ClientUpdate.from_record(record)
    if update.upload.client != client_id:
        return ClientFailure(
            client_id, f"the reply came from client {update.upload.client}, not {client_id}"
        )
    return update


def partition_content(node_config: Mapping[str, object]) -> RecordDict:
    if "partition-id" not in node_config:
        return error_content(
            "this SuperNode has no partition-id: start it with --node-config 'partition-id=N'"
        )
    return RecordDict({"partition": ConfigRecord({"id": int(node_config["partition-id"])})})


def read_partition(reply: Message) -> int | None:
    if reply.has_error() or "partition" not in reply.content.config_records:
        return None
    return int(reply.content.config_records["partition"]["id"])
