"""Federated rounds over prompts: clients, server, aggregators and the in-process runtime."""

from fedtextgrad.federated.aggregators import (
    AGGREGATORS,
    Aggregate,
    AggregationContext,
    Upload,
    aggregate,
)
from fedtextgrad.federated.client import Client, ClientFailure, ClientUpdate
from fedtextgrad.federated.prepare import Engines, FederatedData, prepare_data, sample_clients
from fedtextgrad.federated.runtime import InProcessRuntime, Runtime
from fedtextgrad.federated.server import Server
from fedtextgrad.federated.store import RunStore

__all__ = [
    "AGGREGATORS",
    "Aggregate",
    "AggregationContext",
    "Client",
    "ClientFailure",
    "ClientUpdate",
    "Engines",
    "FederatedData",
    "InProcessRuntime",
    "Runtime",
    "RunStore",
    "Server",
    "Upload",
    "aggregate",
    "prepare_data",
    "sample_clients",
]
