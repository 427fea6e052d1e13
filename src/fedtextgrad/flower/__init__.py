"""FedTextGrad on Flower: the same `Server` and `Client`, with Flower moving the messages.

- `apps`: the ServerApp and ClientApp (`fedtextgrad.flower.apps:server_app` / `:client_app`);
- `runtime`: `FlowerRuntime`, the `Runtime` the Server uses inside the ServerApp;
- `bundle`: writes the app directory `flwr run` bundles (the experiment rides in its run config,
  and, in a closed federation, which SuperNode key serves which client);
- `identity`: SuperNode keys, their fingerprints and assignment to clients; local certificates;
- `superlink`: a closed SuperLink (the Fleet API public, the Control and Runtime APIs on
  127.0.0.1 only), `python -m fedtextgrad.flower superlink`;
- `deploy`: a throwaway local deployment, behind `fedtextgrad run --runtime flower` (open), or
  closed (`run_local(..., closed=True)`).

See docs/flower.md for deployments across machines."""

from __future__ import annotations

from pathlib import Path

from fedtextgrad.errors import FedTextGradError
from fedtextgrad.record import Run

INSTALL_HINT = "install Flower with: pip install 'fedtextgrad[flower]'"


async def run_local(config, out_dir: str | Path, **kwargs) -> Run:
    """`deploy.run_local`, with a one-line error where Flower is not installed."""
    try:
        from fedtextgrad.flower.deploy import run_local as run
    except ImportError as error:
        raise FedTextGradError(f"the Flower runtime needs {error.name}: {INSTALL_HINT}") from None
    return await run(config, out_dir, **kwargs)
