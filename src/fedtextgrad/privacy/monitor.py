"""The experimenter's view: canaries planted in the data, the audit of every upload and of every
global prompt against the clients' real data, and the run's privacy summary in results.json."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from fedtextgrad.config import ExperimentConfig
from fedtextgrad.federated.client import ClientUpdate
from fedtextgrad.federated.hooks import ServerHook
from fedtextgrad.federated.prepare import FederatedData
from fedtextgrad.privacy import canaries as cn
from fedtextgrad.privacy.audit import ClientProfile, audit, build_profile
from fedtextgrad.record import Round, Run


def plant_canaries(config: ExperimentConfig, data: FederatedData) -> FederatedData:
    """The data with `privacy.canaries` canaries appended to the chosen client's training
    inputs (targets unchanged). A pure function of the config, like the data itself."""
    if not config.privacy.canaries:
        return data
    client = config.privacy.canary_client
    planted, _ = cn.plant(data.client_train[client], _made(config))
    client_train = list(data.client_train)
    client_train[client] = planted
    return replace(data, client_train=client_train)


def planted_canaries(config: ExperimentConfig, data: FederatedData) -> list[cn.Canary]:
    """The canaries `plant_canaries` placed, with their example indices."""
    if not config.privacy.canaries:
        return []
    count = len(data.client_train[config.privacy.canary_client])
    return [replace(c, example=c.id % count) for c in _made(config)]


def _made(config: ExperimentConfig) -> list[cn.Canary]:
    pc = config.privacy
    return cn.make_canaries(pc.canaries, config.seed, pc.canary_client)


def client_profile(config: ExperimentConfig, data: FederatedData, client: int) -> ClientProfile:
    """A client's audit profile. The server's own validation and test examples are public task
    data: their words and numbers identify no client."""
    pc = config.privacy
    return build_profile(
        data.client_train[client],
        data.objective.initial_prompt,
        public=[*data.val, *data.test],
        ngram_sizes={*pc.ngram_sizes, pc.copy_ngram},
        common_zipf=pc.common_zipf,
    )


def client_profiles(config: ExperimentConfig, data: FederatedData) -> list[ClientProfile]:
    return [client_profile(config, data, c) for c in range(len(data.client_train))]


class PrivacyMonitor(ServerHook):
    def __init__(self, config: ExperimentConfig, data: FederatedData):
        """`data` as `prepare_data` returns it: the canaries are planted here as in
        `build_client`, so the audit sees what the clients hold."""
        data = plant_canaries(config, data)
        self.config = config.privacy
        self.profiles = client_profiles(config, data)
        # how many clients hold each specific token: 1 means a leak is attributable
        self.holders = Counter(key for p in self.profiles for key in p.specific)
        self.canaries = planted_canaries(config, data)

    @classmethod
    def from_config(cls, config: ExperimentConfig, data: FederatedData) -> PrivacyMonitor | None:
        pc = config.privacy
        return cls(config, data) if pc.audit or pc.canaries else None

    def end_round(self, entry: Round, updates: Sequence[ClientUpdate], prompt: str) -> list[dict]:
        """What the uploads and the new global prompt reveal."""
        entry.privacy, events = self.round(entry.round, updates, prompt, entry.global_prompt)
        return events

    def summarize(self, run: Run) -> None:
        run.privacy = self.summary(run.rounds)

    def round(
        self, number: int, updates: Sequence[ClientUpdate], incoming: str, global_prompt: str
    ) -> tuple[dict, list[dict]]:
        """The round's privacy entry, and the canary events to log."""
        n = self.config.copy_ngram
        uploads, events = [], []
        incoming_canaries = cn.exposed(incoming, self.canaries)
        for update in updates:
            client, prompt = update.upload.client, update.upload.prompt
            found = audit(prompt, self.profiles[client])
            entry = {"client": client, **found.to_dict(), "leaks": found.leaks(n)}
            if self.canaries:
                exposed = cn.exposed(prompt, self.canaries)
                entry["canaries"] = {str(k): v for k, v in exposed.items()}
                # the local step that brought it in; 0: it came with the global prompt
                steps = {
                    k: 0 if k in incoming_canaries else _first_step(update, k) for k in exposed
                }
                entry["canary_steps"] = {str(k): v for k, v in steps.items()}
                for canary, parts in exposed.items():
                    events.append(
                        {"event": "canary", "round": number, "canary": canary, "where": "upload"}
                        | {"client": client, "step": steps[canary], "parts": parts}
                    )
            uploads.append(entry)
        record = {"uploads": uploads, "global": self._global(global_prompt)}
        for canary, parts in record["global"].get("canaries", {}).items():
            events.append(
                {"event": "canary", "round": number, "canary": int(canary), "where": "global"}
                | {"parts": parts}
            )
        return record, events

    def _global(self, prompt: str) -> dict:
        """The global prompt against every client's data: who it leaks from, and which of the
        tokens found only one client holds (the clearest attribution)."""
        n = self.config.copy_ngram
        by_client = {c: audit(prompt, profile) for c, profile in enumerate(self.profiles)}
        exclusive = {}
        for client, found in by_client.items():
            only = sorted(t for t in found.specific_tokens if self.holders[t] == 1)
            if only:
                exclusive[str(client)] = only
        record = {
            "leaks_from": [c for c, found in by_client.items() if found.leaks(n)],
            "exclusive": exclusive,
            "by_client": {str(c): found.to_dict() for c, found in by_client.items()},
        }
        if self.canaries:
            record["canaries"] = {str(k): v for k, v in cn.exposed(prompt, self.canaries).items()}
        return record

    def summary(self, rounds: Sequence[Round]) -> dict:
        """results.json's `privacy`: leakage over the run and each canary's first exposures."""
        with_privacy = [r for r in rounds if r.privacy is not None]
        result = {
            "settings": self.config.model_dump(),
            "leakage": _leakage(with_privacy),
            "defenses": _defense_counts(with_privacy),
        }
        if self.canaries:
            result["canaries"] = self._canary_summary(with_privacy)
        return result

    def _canary_summary(self, rounds: Sequence[Round]) -> dict:
        exposure = []
        for canary in self.canaries:
            key = str(canary.id)
            first_upload = first_global = None
            others: dict[int, int] = {}
            for entry in rounds:
                assert entry.privacy is not None
                for upload in entry.privacy["uploads"]:
                    parts = upload.get("canaries", {}).get(key)
                    if not parts:
                        continue
                    if upload["client"] == canary.client and first_upload is None:
                        step = upload.get("canary_steps", {}).get(key)
                        first_upload = {"round": entry.round, "step": step, "parts": parts}
                    elif upload["client"] != canary.client:
                        others.setdefault(upload["client"], entry.round)
                parts = entry.privacy["global"].get("canaries", {}).get(key)
                if parts and first_global is None:
                    first_global = {"round": entry.round, "parts": parts}
            exposure.append(
                {
                    "id": canary.id,
                    "upload": first_upload,
                    "global": first_global,
                    "other_clients": [{"client": c, "round": r} for c, r in sorted(others.items())],
                }
            )
        return {
            "count": len(self.canaries),
            "client": self.config.canary_client,
            "planted": [c.to_dict() for c in self.canaries],
            "in_upload": sum(e["upload"] is not None for e in exposure),
            "in_global": sum(e["global"] is not None for e in exposure),
            "in_other_clients": sum(bool(e["other_clients"]) for e in exposure),
            "exposure": exposure,
        }


def _first_step(update: ClientUpdate, canary: int) -> int | None:
    """The first local step whose kept prompt held the canary (None: not seen in any step)."""
    for step in (update.privacy or {}).get("steps", []):
        if str(canary) in step.get("canaries", {}):
            return step["step"]
    return None


def _leakage(rounds: Sequence[Round]) -> dict:
    audits = [r.privacy for r in rounds if r.privacy is not None]
    uploads = [u for a in audits for u in a["uploads"]]
    finals = audits[-1]["global"] if audits else {}
    return {
        "uploads": len(uploads),
        "uploads_leaking": sum(u["leaks"] for u in uploads),
        "max_specific": max((u["specific_count"] for u in uploads), default=0),
        "max_lcs_chars": max((u["lcs_chars"] for u in uploads), default=0),
        "max_lcs_words": max((u["lcs_words"] for u in uploads), default=0),
        "max_shared_ngrams": {
            n: max((u["shared_ngrams"].get(n, 0) for u in uploads), default=0)
            for n in (uploads[0]["shared_ngrams"] if uploads else {})
        },
        "global_rounds_leaking": sum(bool(a["global"]["leaks_from"]) for a in audits),
        "final_global_leaks_from": finals.get("leaks_from", []),
        "final_global_specific": {
            c: a["specific_count"] for c, a in finals.get("by_client", {}).items()
        },
    }


def _defense_counts(rounds: Sequence[Round]) -> dict:
    records = [c.privacy or {} for r in rounds for c in r.clients]
    return {
        "uploads": len(records),
        "sanitized": sum(r.get("sent") == "sanitized" for r in records),
        "blocked": sum(r.get("sent") == "incoming" for r in records),
    }
