"""Bad input and hostile clients against a real server on 127.0.0.1 (issue 18): every
bad value is a 4xx that says what was wrong, never a 500 or an exception's text;
rejected uploads leave nothing on disk; wrong keys, slow headers and big feedback are
bounded; /metrics wants a key."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistant.serve.limits import MAX_JSON_DEPTH, MAX_OFFSET, json_depth_exceeds
from assistant.serve.rate_limit import RateLimiter
from assistant.serve.settings import ServiceSettings
from server_harness import CITING, Service, start_service

WAIT = {"wait": "true"}  # 201 and the ingest report, once the accepted job has run

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
QUESTION = "What do pangolins eat?"


@pytest.fixture(scope="module")
def service(citing_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from start_service(tmp_path_factory.mktemp("hostile"), citing_model, header_timeout_s=1.0)


def read_sse(r: httpx.Response) -> list[tuple[str | None, dict]]:
    events, kind = [], None
    for line in r.iter_lines():
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((kind, json.loads(line.split(":", 1)[1])))
    return events


# ---- validation: 422 with a message, never a 500 ----------------------------------------------------


@pytest.mark.parametrize(("filters", "message"), [
    ({"sources": [5]}, "filters.sources must be a list of strings"),
    ({"sources": "zoo/*"}, "filters.sources must be a list of strings"),
    ({"tags": [[1]]}, "filters.tags must be a list of strings"),
    ({"doc_ids": {"a": 1}}, "filters.doc_ids must be a list of strings"),
    ({"date_from": {"a": 1}}, "filters.date_from must be an ISO date"),
    ({"date_to": "last tuesday"}, "filters.date_to must be an ISO date"),
    ({"colour": ["red"]}, "unknown filters ['colour']"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_bad_filter_values_are_422_streamed_or_not(service: Service, filters: dict, message: str,
                                                   stream: bool) -> None:
    r = service.post("/v1/ask", "reader", json={"question": QUESTION, "filters": filters, "stream": stream})
    assert r.status_code == 422 and message in r.json()["detail"], r.text


def test_good_filters_still_answer(service: Service) -> None:
    r = service.post("/v1/ask", "reader", json={"question": QUESTION, "filters": {
        "sources": ["zoo/*"], "tags": [], "date_from": "2000-01-01", "date_to": None}})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("params", "ok"), [
    ({"offset": 9223372036854775808}, False), ({"offset": -1}, False), ({"limit": 0}, False),
    ({"limit": 10**30}, False), ({"offset": MAX_OFFSET}, True), ({"limit": 1000, "offset": 0}, True),
])
def test_paging_bounds(service: Service, params: dict, ok: bool) -> None:
    r = service.get("/v1/documents", "reader", params=params)
    if ok:
        assert r.status_code == 200 and isinstance(r.json()["documents"], list), r.text
    else:
        assert r.status_code in (400, 422) and ("offset" in r.text or "limit" in r.text), r.text


def test_huge_search_k_is_422(service: Service) -> None:
    r = service.get("/v1/search", "reader", params={"q": "pangolin", "k": 9223372036854775808})
    assert r.status_code == 422 and "top_k must be in 1..50" in r.json()["detail"], r.text


def test_json_nesting_depth_is_bounded(service: Service) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    bodies = [("/v1/ask", "reader", '{"question": "%s", "filters": {"tags": %s}}' % (QUESTION, deep)),
              ("/v1/documents", "editor", '{"text": "Deep.", "metadata": {"x": %s}}' % deep),
              ("/v1/chat/completions", "reader", '{"messages": [{"role": "user", "content": %s}]}' % deep),
              ("/v1/feedback", "editor", '{"answer_id": %s, "rating": "up"}' % deep)]
    for path, role, body in bodies:
        r = service.post(path, role, content=body.encode(), headers={"content-type": "application/json"})
        assert r.status_code == 422 and f"more than {MAX_JSON_DEPTH} deep" in r.json()["detail"], (path, r.text)
    nested: object = "leaf"
    for _ in range(MAX_JSON_DEPTH - 3):  # inside {"metadata": {"x": ...}} of a document
        nested = [nested]
    r = service.post("/v1/documents", "editor", params=WAIT, json={"text": "Nested metadata is fine.", "metadata": {"x": nested}})
    assert r.status_code == 201, r.text


def test_json_depth_scan() -> None:
    assert not json_depth_exceeds(b'{"a": [[1], {"b": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"["}]}', limit=3)
    assert json_depth_exceeds(b'{"a": [[[1]]]}', limit=3) and not json_depth_exceeds(b'{"a": [[1]]}', limit=3)
    mixed = b"[{" * 20 + b"}]" * 20
    assert json_depth_exceeds(mixed, limit=39) and not json_depth_exceeds(mixed, limit=40)
    assert not json_depth_exceeds(b"[{" * 16 + b"}]" * 16) and json_depth_exceeds(b"[{" * 16 + b"[]}]" * 16)
    started = time.perf_counter()
    assert json_depth_exceeds(b"[" * 5_000_000 + b"]" * 5_000_000)
    assert not json_depth_exceeds(b"[]" * 5_000_000)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(("content", "message"), [
    (None, "must be a string or a list of text parts, got null"),
    (12345, "must be a string or a list of text parts, got int"),
    ([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}], "messages[0].content[0] is a type 'image_url' part"),
    ([{"type": "text", "text": 5}], "messages[0].content[0].text must be a string"),
    (["plain"], "messages[0].content[0] is a str part"),
])
def test_openai_content_of_the_wrong_kind_is_422(service: Service, content: object, message: str) -> None:
    r = service.post("/v1/chat/completions", "reader", json={"messages": [{"role": "user", "content": content}]})
    assert r.status_code == 422 and message in r.json()["detail"], r.text


def test_openai_text_parts_are_joined(service: Service) -> None:
    r = service.post("/v1/chat/completions", "reader", json={"messages": [
        {"role": "user", "content": [{"type": "text", "text": QUESTION}]}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == CITING, r.text
    parts = [{"type": "text", "text": "Pangolins:"}, {"type": "text", "text": "what do they eat?"}]
    r = service.post("/v1/chat/completions", "reader", json={"messages": [{"role": "user", "content": parts}],
                                                             "answer_mode": "extractive"})
    assert r.status_code == 200, r.text
    with sqlite3.connect(service.settings.service_db) as conn:
        [(question,)] = conn.execute("SELECT question FROM answers WHERE answer_id = ?", (r.json()["answer_id"],))
    assert question == "Pangolins:\nwhat do they eat?"


def test_max_new_tokens_is_capped_by_the_setting(service: Service, citing_model: Path, tmp_path: Path) -> None:
    assert ServiceSettings(index_dir=tmp_path).max_new_tokens_limit == 512
    r = service.post("/v1/ask", "reader", json={"question": QUESTION, "max_new_tokens": 1024})
    assert r.status_code == 422 and "max_new_tokens must be in 1..512" in r.json()["detail"], r.text
    r = service.post("/v1/chat/completions", "reader", json={"messages": [{"role": "user", "content": QUESTION}],
                                                             "max_tokens": 513})
    assert r.status_code == 422 and "max_tokens must be in 1..512" in r.json()["detail"], r.text
    assert service.post("/v1/ask", "reader", json={"question": QUESTION, "max_new_tokens": 512}).status_code == 200
    for svc in start_service(tmp_path, citing_model, max_new_tokens_limit=16):
        r = svc.post("/v1/ask", "reader", json={"question": QUESTION, "max_new_tokens": 17})
        assert r.status_code == 422 and "1..16" in r.json()["detail"]


# a failed peft load leaves its config on the model; the next try warns (a generator matter, not this test's)
@pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute:UserWarning")
def test_a_failure_inside_the_service_shows_no_exception_text(
        citing_model: Path, tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path: Path) -> None:
    """An adapter whose weights file is damaged: loading it fails inside the generation
    worker. The client gets "internal error" and an error id, in a 500 or in the stream's
    error event; the exception is in the server log under that id."""
    adapters = tmp_path / "adapters"
    shutil.copytree(tiny_adapter_dir, adapters)
    (adapters / "demo" / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("assistant.serve.errors")
    logger.addHandler(handler)
    try:
        for svc in start_service(tmp_path / "svc", tiny_model_dir, adapters_dir=adapters):
            body = {"question": QUESTION, "adapter": "demo"}
            r = svc.post("/v1/ask", "reader", json=body)
            assert r.status_code == 500 and r.json()["detail"] == "internal error", r.text
            plain_id = r.json()["error_id"]
            with httpx.stream("POST", svc.url + "/v1/ask", headers=svc.headers("reader"), timeout=60,
                              json={**body, "stream": True}) as r:
                assert r.status_code == 200
                events = read_sse(r)
            kind, error = events[-1]
            assert kind == "error" and error["detail"] == "internal error" and error["status_code"] == 500, events
            with httpx.stream("POST", svc.url + "/v1/chat/completions", headers=svc.headers("reader"), timeout=60,
                              json={"messages": [{"role": "user", "content": QUESTION}], "adapter": "demo",
                                    "stream": True}) as r:
                lines = [line[5:].strip() for line in r.iter_lines() if line.startswith("data:")]
            chunk_error = json.loads(lines[-2])["error"]
            assert chunk_error["detail"] == "internal error" and lines[-1] == "[DONE]"
    finally:
        logger.removeHandler(handler)
    for error_id in (plain_id, error["error_id"], chunk_error["error_id"]):
        [record] = [rec for rec in records if error_id in rec.getMessage()]
        assert record.exc_info and "SafetensorError" in type(record.exc_info[1]).__name__, record.exc_info


# ---- hygiene: uploads, feedback size -------------------------------------------------------------


def test_rejected_uploads_are_deleted(service: Service) -> None:
    files = [("file", ("tool.exe", b"MZ\x90\x00", "application/octet-stream")),
             ("file", ("empty.txt", b"", "text/plain")),
             ("file", ("kept.md", b"# Quokka\n\nQuokkas live on Rottnest Island.", "text/markdown"))]
    r = service.post("/v1/documents", "editor", params=WAIT, files=files)
    assert r.status_code == 201 and r.json()["added"] == 1, r.text
    assert {s["source"] for s in r.json()["skipped"]} == {"upload/tool.exe", "upload/empty.txt"}
    names = {p.name for p in service.settings.upload_dir.iterdir()}
    assert "kept.md" in names and not names & {"tool.exe", "empty.txt"}, names


def test_feedback_correction_is_capped(service: Service) -> None:
    answer_id = service.post("/v1/ask", "reader", json={"question": QUESTION,
                                                        "answer_mode": "extractive"}).json()["answer_id"]
    limit = service.settings.max_feedback_chars
    r = service.post("/v1/feedback", "editor", json={"answer_id": answer_id, "rating": "down",
                                                      "correction": "x" * 3_000_000})
    assert r.status_code == 422 and f"the limit is {limit}" in r.json()["detail"], r.text
    r = service.post("/v1/feedback", "editor", json={"answer_id": answer_id, "rating": "down", "correction": "y" * limit})
    assert r.status_code == 201, r.text


# ---- hostile clients: wrong keys, slow headers, metrics ------------------------------------------


def test_wrong_keys_spend_a_per_address_budget_then_429(citing_model: Path, tmp_path: Path) -> None:
    for svc in start_service(tmp_path, citing_model, auth_failures_per_minute=5, metrics_public=True):
        assert httpx.get(svc.url + "/metrics").status_code == 200  # configured public
        codes = [httpx.get(svc.url + "/v1/documents", headers={"Authorization": f"Bearer da_bad_{n}"}).status_code
                 for n in range(30)]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
        r = svc.get("/v1/documents", "reader")  # a good key from that address waits too
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 12 and "wrong API keys" in r.text
        assert httpx.get(svc.url + "/v1/documents").status_code == 401  # no key: nothing guessed, told so


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(1, max_callers=100)
    for n in range(1000):
        limiter.acquire(f"10.0.{n // 250}.{n % 250}")
        assert len(limiter) <= 100
    assert limiter.acquire("10.0.3.249") > 0  # the most recent callers are remembered
    assert limiter.wait("10.0.3.249") > 0 and limiter.wait("never-seen") == 0


def _seconds_until_closed(sock: socket.socket, trickle: bytes) -> float:
    """Sends ``trickle`` a byte every 0.1 s; the seconds until the server closes the socket."""
    started = time.monotonic()
    sock.settimeout(0.1)
    for n in range(100):
        try:
            sock.sendall(trickle[n % len(trickle):n % len(trickle) + 1])
            if sock.recv(65536) == b"":
                break
        except TimeoutError:
            continue
        except OSError:  # reset or broken pipe: closed
            break
    return time.monotonic() - started


def _health_response(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while not data.endswith(b"}") and (chunk := sock.recv(65536)):
        data += chunk
    return data


def test_slow_headers_are_cut_off(service: Service) -> None:
    assert service.settings.header_timeout_s == 1.0
    with socket.create_connection(("127.0.0.1", service.server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert _seconds_until_closed(sock, b"X-Slow: yes\r\n") < 3
    with socket.create_connection(("127.0.0.1", service.server.port)) as sock:  # silent after connecting
        sock.settimeout(4)
        started = time.monotonic()
        assert sock.recv(100) == b"" and time.monotonic() - started < 3
    with socket.create_connection(("127.0.0.1", service.server.port)) as sock:  # the second request of a connection
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b'"status":"ok"' in _health_response(sock)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert _seconds_until_closed(sock, b"X-Slow: yes\r\n") < 3
    with socket.create_connection(("127.0.0.1", service.server.port)) as sock:  # a prompt request is served
        time.sleep(0.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _health_response(sock).startswith(b"HTTP/1.1 200")


def test_metrics_want_a_key_unless_public(service: Service) -> None:
    assert service.settings.metrics_public is False
    assert httpx.get(service.url + "/metrics").status_code == 401
    r = service.get("/metrics", "reader")
    assert r.status_code == 200 and "assistant_requests_total" in r.text
