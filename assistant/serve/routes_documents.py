"""Documents: ``GET /v1/search`` over the index, ``POST /v1/documents`` (JSON or
multipart upload, accepted as an ingest job), ``GET /v1/ingest/{job_id}``,
``GET /v1/documents`` and ``DELETE /v1/documents/{doc_id}``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath, FromQuery

from assistant.serve.auth import require_role
from assistant.serve.index_writes import IndexWrites
from assistant.serve.limits import check_page, check_question, check_top_k
from assistant.serve.settings import ServiceSettings
from assistant.serve.ingest_jobs import IngestJobs
from assistant.serve.uploads import documents_from_json
from indexer.index import Index
from indexer.search import SearchFilter

READER, EDITOR = {"role": "reader"}, {"role": "editor"}


@dataclass
class DocumentBody:
    text: str
    id: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


@get("/v1/search", guards=[require_role], opt=READER)
async def search(settings: NamedDependency[ServiceSettings], index: NamedDependency[Index], q: FromQuery[str], k: FromQuery[int] = 10,
                 mode: FromQuery[str] = "hybrid", source: FromQuery[str | None] = None,
                 tag: FromQuery[str | None] = None) -> dict[str, Any]:
    """Hybrid (or dense / bm25) search over the index."""
    q = check_question(settings, q)
    k = check_top_k(settings, k)
    if mode not in ("hybrid", "dense", "bm25"):
        raise ValidationException(detail=f"mode must be hybrid, dense or bm25, got {mode!r}")
    filt = SearchFilter(sources=(source,) if source else (), tags=(tag,) if tag else ())
    started = time.perf_counter()
    hits = await asyncio.to_thread(index.search, q, k=k, mode=mode, filters=filt)  # type: ignore[arg-type]
    return {"query": q, "mode": mode, "took_ms": (time.perf_counter() - started) * 1000, "hits": [
        {"doc_id": h.doc_id, "source": h.source, "start": h.start, "end": h.end, "text": h.text, "score": h.score,
         "dense_score": h.dense_score, "bm25_score": h.bm25_score, "metadata": h.metadata, "tags": h.tags}
        for h in hits]}


@post("/v1/documents", guards=[require_role], opt=EDITOR, status_code=202)
async def add_documents(request: Request, ingest_jobs: NamedDependency[IngestJobs],
                        wait: FromQuery[bool] = False) -> Response:
    """Add documents: JSON ``{"documents": [{"id", "text", "source", "metadata", "tags"}]}`` or
    ``{"id", "text", ...}``, or multipart file upload(s) in the field ``file``.

    202: written to disk and queued; ``status_url`` says when it is indexed (``GET
    /v1/ingest/{job_id}``). ``?wait=true``: 201 with the ingest report once indexed."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise ValidationException(detail="multipart body has no file")
        tags = [str(v) for k, v in form.multi_items() if k == "tags" and not isinstance(v, UploadFile)]
        uploads = [(f.filename or "upload", await f.read()) for f in files]
        job_id = await asyncio.to_thread(ingest_jobs.accept_files, uploads, tags)  # written and flushed to disk
        size = {"files": len(uploads)}
    else:
        try:
            payload = await request.json()
        except Exception:
            raise ValidationException(detail="body is not valid JSON") from None
        docs = documents_from_json(payload, DocumentBody)
        job_id = await asyncio.to_thread(ingest_jobs.accept_documents, docs)
        size = {"documents": len(docs)}
    if wait:
        status = await ingest_jobs.wait(job_id)
        if status["state"] == "failed":
            return Response(status["error"], status_code=status["status_code"])
        return Response({"job_id": job_id, **status["report"]}, status_code=201)
    url = f"/v1/ingest/{job_id}"
    return Response({"job_id": job_id, "state": "queued", "status_url": url, **size}, status_code=202,
                    headers={"Location": url})


@get("/v1/ingest/{job_id:str}", guards=[require_role], opt=EDITOR)
async def ingest_status(job_id: FromPath[str], ingest_jobs: NamedDependency[IngestJobs]) -> dict[str, Any]:
    """An accepted ingest: ``queued`` (with ``jobs_ahead``), ``running`` (``documents_indexed``),
    ``done`` (the ingest ``report``) or ``failed`` (``error``)."""
    status = ingest_jobs.status(job_id)
    if status is None:
        raise HTTPException(status_code=404, detail=f"no ingest job {job_id!r}")
    return status


@get("/v1/documents", guards=[require_role], opt=READER)
async def list_documents(index: NamedDependency[Index], limit: FromQuery[int] = 100, offset: FromQuery[int] = 0) -> dict[str, Any]:
    check_page(limit, offset)
    docs = await asyncio.to_thread(index.list_documents, limit=limit, offset=offset)
    return {"documents": docs, "limit": limit, "offset": offset}


@delete("/v1/documents/{doc_id:path}", guards=[require_role], opt=EDITOR, status_code=200)
async def delete_document(doc_id: FromPath[str], index: NamedDependency[Index],
                          index_writes: NamedDependency[IndexWrites]) -> dict[str, Any]:
    doc_id = doc_id.lstrip("/")
    if not await index_writes.run(index.delete, doc_id):
        raise HTTPException(status_code=404, detail=f"no document {doc_id!r}")
    return {"deleted": doc_id}


ROUTES = [search, add_documents, ingest_status, list_documents, delete_document]
