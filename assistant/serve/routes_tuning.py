"""Admin routes for adapters and tuning jobs.

    GET  /v1/adapters                       the registry, with each manifest and the active adapter
    POST /v1/adapters/{name}/activate       switch without a restart (``base``: no adapter)
    POST /v1/adapters/rollback              back to the adapter active before
    POST /v1/tuning/jobs                    queue a re-tuning job → 202 and its id
    GET  /v1/tuning/jobs[/{job_id}]         status, progress, metrics and the log's tail
    POST /v1/tuning/jobs/{job_id}/cancel    stop it (the active adapter stays as it was)
    POST /v1/tuning/jobs/{job_id}/resume    queue an interrupted, failed or cancelled job again

Files a job names (``pairs``, ``eval_set``) are paths inside the service's data
directory; anything resolving outside it is refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath, JSONBody

from assistant.generation.adapters import AdapterSwitch
from assistant.generation.base import TextGenerator
from assistant.generation.registry import AdapterRegistry, RegistryError
from assistant.serve.auth import require_role
from assistant.serve.settings import ServiceSettings
from assistant.tuning.jobs import JobError, JobRunner
from assistant.tuning.spec import RetuneRequest

ADMIN = {"role": "admin"}


@dataclass
class ActivateBody:
    force: bool = False
    """Activate even an adapter the gate rejected."""


def data_path(settings: ServiceSettings, given: str, what: str) -> str:
    assert settings.data_dir is not None
    root = Path(settings.data_dir).resolve()
    path = (root / given).resolve()
    if not path.is_relative_to(root):
        raise ValidationException(detail=f"{what} must be a path inside the data directory, got {given!r}")
    if not path.is_file():
        raise ValidationException(detail=f"{what}: no file {given!r} in the data directory")
    return str(path)


def _summary(manifest: dict[str, Any]) -> dict[str, Any]:
    gate = manifest.get("gate", {})
    return {k: manifest.get(k) for k in ("name", "base_model", "base_model_hash", "data_hash", "created", "active")} | {
        "gate": {"decision": gate.get("decision"), "reason": gate.get("reason")},
        "metrics": {k: v for k, v in manifest.get("metrics", {}).items() if k in ("domain", "drift")}}


@get("/v1/adapters", guards=[require_role], opt=ADMIN)
async def list_adapters(registry: NamedDependency[AdapterRegistry], generator: NamedDependency[TextGenerator]) -> dict[str, Any]:
    """Registered adapters with their manifests, and the active one (None: the base model)."""
    manifests = await asyncio.to_thread(registry.list)
    return {"adapters": [_summary(m) for m in manifests], "active": generator.active_adapter,
            "model": generator.model_name}


@post("/v1/adapters/{name:str}/activate", guards=[require_role], opt=ADMIN, status_code=200)
async def activate_adapter(name: FromPath[str], registry: NamedDependency[AdapterRegistry], adapter_switch: NamedDependency[AdapterSwitch],
                           generator: NamedDependency[TextGenerator], data: JSONBody[ActivateBody | None] = None) -> dict[str, Any]:
    """Make ``name`` the adapter answers use when a request names none (``base``: none).
    Refused (409) for an adapter the gate rejected, unless ``force``, and for one
    trained on another base model. Takes effect for the next batch, without a restart."""
    target = None if name == "base" else name
    try:
        await asyncio.to_thread(adapter_switch.activate, target, force=bool(data and data.force))
    except RegistryError as exc:
        missing = target not in await asyncio.to_thread(registry.names)
        raise HTTPException(status_code=404 if missing else 409, detail=str(exc)) from None
    return {"active": generator.active_adapter, "model": generator.model_name}


@post("/v1/adapters/rollback", guards=[require_role], opt=ADMIN, status_code=200)
async def rollback_adapter(adapter_switch: NamedDependency[AdapterSwitch], generator: NamedDependency[TextGenerator]) -> dict[str, Any]:
    """Back to the adapter that was active before the current one."""
    try:
        await asyncio.to_thread(adapter_switch.rollback)
    except RegistryError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    return {"active": generator.active_adapter, "model": generator.model_name}


@post("/v1/tuning/jobs", guards=[require_role], opt=ADMIN, status_code=202)
async def submit_job(data: JSONBody[RetuneRequest], settings: NamedDependency[ServiceSettings], registry: NamedDependency[AdapterRegistry],
                     generator: NamedDependency[TextGenerator], jobs: NamedDependency[JobRunner]) -> Response:
    """Queue a re-tuning job: prepare the RAFT set, train, register, gate, activate (with
    ``stages`` ``sft,prefer`` or ``prefer``, preference tuning from feedback after that).
    One job runs at a time, in its own process; others wait in order."""
    fields = dataclasses.asdict(data) | {
        "pairs": data_path(settings, data.pairs, "pairs"),
        "eval_set": data_path(settings, data.eval_set, "eval_set") if data.eval_set else None,
        "preferences": data_path(settings, data.preferences, "preferences") if data.preferences else None,
        "index_dir": str(settings.index_dir), "registry_dir": str(registry.root),
        "model": generator.model_name}
    job_id = await asyncio.to_thread(jobs.submit, fields)  # RetuneSpec checks the settings: 422
    queued = [j["job_id"] for j in await asyncio.to_thread(jobs.store.with_status, "queued")]
    return Response({"job_id": job_id, "status": "queued", "ahead": queued.index(job_id) if job_id in queued else 0},
                    status_code=202)


@get("/v1/tuning/jobs", guards=[require_role], opt=ADMIN)
async def list_jobs(jobs: NamedDependency[JobRunner]) -> dict[str, Any]:
    listed = await asyncio.to_thread(jobs.store.all)
    return {"jobs": [{k: j[k] for k in ("job_id", "status", "created", "started", "finished", "error")} for j in listed]}


def _job_call(jobs: JobRunner, method: str, job_id: str) -> Any:
    try:
        return getattr(jobs, method)(job_id)
    except KeyError:
        raise HTTPException(status_code=404, detail=f"no tuning job {job_id!r}") from None
    except JobError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


@get("/v1/tuning/jobs/{job_id:str}", guards=[require_role], opt=ADMIN)
async def job_status(job_id: FromPath[str], jobs: NamedDependency[JobRunner]) -> dict[str, Any]:
    """Status, stage, training step / loss / tokens per second, the result (gate
    decision and metrics) and the last lines of the job's log."""
    return await asyncio.to_thread(_job_call, jobs, "status", job_id)


@post("/v1/tuning/jobs/{job_id:str}/cancel", guards=[require_role], opt=ADMIN, status_code=200)
async def cancel_job(job_id: FromPath[str], jobs: NamedDependency[JobRunner]) -> dict[str, Any]:
    job = await asyncio.to_thread(_job_call, jobs, "cancel", job_id)
    return {"job_id": job_id, "status": job["status"]}


@post("/v1/tuning/jobs/{job_id:str}/resume", guards=[require_role], opt=ADMIN, status_code=200)
async def resume_job(job_id: FromPath[str], jobs: NamedDependency[JobRunner]) -> dict[str, Any]:
    job = await asyncio.to_thread(_job_call, jobs, "resume", job_id)
    return {"job_id": job_id, "status": job["status"]}


ROUTES = [list_adapters, activate_adapter, rollback_adapter, submit_job, list_jobs, job_status, cancel_job, resume_job]
