"""A real uvicorn server on 127.0.0.1 in a background thread, and the service the
tests start on it: a real index of three documents and a tiny Llama trained here to
give a fixed answer (the fixtures that train it are in conftest.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from assistant.generation.base import GenerationSettings
from assistant.generation.local import LocalGenerator
from assistant.generation.queue import GenerationQueue
from assistant.serve.app import create_app
from assistant.serve.auth import KeyStore
from assistant.serve.settings import ServiceSettings
from indexer.index import Index
from indexer.loaders import Document


class ServerThread:
    def __init__(self, app: Any):
        import uvicorn

        from assistant.serve.server import server_config

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(server_config(app, app.state.settings, lifespan="on"))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()


DOCS = [
    Document("pangolin", "Pangolins are scaly mammals. Pangolins eat ants and termites, which they catch with "
             "long sticky tongues.", "zoo/pangolin.txt", {"format": "txt"}),
    Document("volcano", "Volcanic lightning flashes inside thick ash plumes during explosive eruptions.",
             "geo/volcano.txt", {"format": "txt"}),
    Document("bread", "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough.",
             "food/bread.txt", {"format": "txt"}),
]
CITING = "Pangolins eat ants and termites [1]."
FABRICATED = "Pangolins eat ants and termites [7]."


def train_fixed_answer(base: Path, out: Path, answer: str, questions: list[str]) -> Path:
    """Teaches the tiny model to reply ``answer`` to prompts like the service's
    (a few hundred steps of full fine-tuning; the model is 2 layers wide 64)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.grounding.passages import build_messages, passages_from_hits

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    with Index.open(out.parent / f"{out.name}-index") as index:
        index.ingest_documents(DOCS)
        prompts = [tokenizer.apply_chat_template(build_messages(q, passages_from_hits(index.search(q, k=4))),
                                                 tokenize=False, add_generation_prompt=True) for q in questions]
    examples = []
    for prompt in prompts:
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        examples.append((torch.tensor([p_ids + a_ids]), torch.tensor([[-100] * len(p_ids) + a_ids])))
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(300):
        ids, labels = examples[step % len(examples)]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        if loss.item() < 0.01 and step > 20:
            break
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


QUESTIONS = ["What do pangolins eat?", "Which food do pangolins catch with their tongues?",
             "How do pangolins feed?"]


class Service:
    def __init__(self, server: ServerThread, settings: ServiceSettings, keys: dict[str, str], app):
        self.server, self.settings, self.keys, self.app = server, settings, keys, app
        self.url = server.url

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def post(self, path: str, role: str = "admin", headers: dict[str, str] | None = None, **kw) -> httpx.Response:
        return httpx.post(self.url + path, headers={**self.headers(role), **(headers or {})}, timeout=60, **kw)

    def get(self, path: str, role: str = "admin", **kw) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.headers(role), timeout=60, **kw)


def start_service(tmp: Path, model: Path | str, queue_size: int = 8, adapters_dir: Path | None = None,
                  prepare: Callable[[Index, LocalGenerator], None] | None = None, generator: Any = None,
                  **overrides) -> Iterator[Service]:
    """A service over the DOCS index; ``prepare`` runs on the index and the generator
    before the service opens them (to place files beside the index). ``generator``: another
    backend than the transformers one for ``model``."""
    index = Index.open(tmp / "index")
    index.ingest_documents(DOCS)
    settings = ServiceSettings(index_dir=tmp / "index", **overrides)
    store = KeyStore(settings.service_db)
    keys = {role: store.create(f"test-{role}", role)[1] for role in ("reader", "editor", "admin")}
    store.close()
    if generator is None:
        generator = LocalGenerator(GenerationSettings(model=str(model), device="cpu", max_new_tokens=24,
                                                      adapters_dir=adapters_dir))
    if prepare is not None:
        prepare(index, generator)
    queue = GenerationQueue(generator, max_batch_size=4, queue_size=queue_size)
    app = create_app(settings, index=index, generator=generator, queue=queue)
    try:
        with ServerThread(app) as server:
            yield Service(server, settings, keys, app)
    finally:
        queue.close()
        index.close()
