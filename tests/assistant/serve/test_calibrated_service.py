"""The service with an answerability calibrator beside its index: answers carry their
calibrated probability, a strict operating point abstains and says why, and a calibrator
fitted for another model stops the service at start-up with a clear error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from assistant.evaluation.calibrate import fit_calibrator
from assistant.generation.local import LocalGenerator
from assistant.generation.queue import GenerationQueue
from assistant.grounding.answerability import CalibratorMismatchError, OperatingPoint, calibrator_path
from assistant.serve.resources import Resources
from assistant.serve.settings import ServiceSettings
from calibration_records import synthetic_records
from indexer.index import Index
from server_harness import start_service

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def place_calibrator(model: str | None = None, *, never_meets_target: bool = False):
    def prepare(index: Index, generator: LocalGenerator) -> None:
        calibrator = fit_calibrator(synthetic_records(), fitted={"model": model or generator.model_name,
                                                                 "embedder": index.embedder.name})
        if never_meets_target:
            calibrator = dataclasses.replace(calibrator, curve=tuple(
                OperatingPoint(p.threshold, 1.0, p.coverage) for p in calibrator.curve))
        calibrator.save(calibrator_path(index.directory, None))
    return prepare


def test_answers_are_held_to_the_calibrated_operating_point(citing_model: Path, tmp_path: Path) -> None:
    for svc in start_service(tmp_path / "loose", citing_model, prepare=place_calibrator(), max_hallucination=1.0):
        body = svc.post("/v1/ask", "reader", json={"question": "What do pangolins eat?"}).json()
        assert body["grounded"] is True, body
        assert 0.0 <= body["answerability"]["probability"] <= 1.0
        assert body["answerability"]["max_hallucination"] == 1.0 and body["answerability"]["signals"]["dense_best"] > 0.3
    for svc in start_service(tmp_path / "strict", citing_model, prepare=place_calibrator(never_meets_target=True)):
        body = svc.post("/v1/ask", "reader", json={"question": "What do pangolins eat?"}).json()
        assert body["grounded"] is False and body["citations"] == [] and body["closest"]
        assert "calibrator answers nothing at most 10%" in body["abstained_reason"]
        assert body["dropped"] and body["raw_answer"]


def test_a_calibrator_for_another_model_stops_the_start(citing_model: Path, tmp_path: Path) -> None:
    from assistant.generation.base import GenerationSettings

    generator = LocalGenerator(GenerationSettings(model=str(citing_model), device="cpu"))
    with Index.open(tmp_path / "index") as index:
        index.ingest_documents([])
        place_calibrator("someone-else")(index, generator)
        queue = GenerationQueue(generator, max_batch_size=1, queue_size=1)
        try:
            with pytest.raises(CalibratorMismatchError, match="fitted for model 'someone-else'.*assistant calibrate"):
                Resources.open(ServiceSettings(index_dir=tmp_path / "index", data_dir=tmp_path / "data"), index=index,
                               generator=generator, queue=queue)
        finally:
            queue.close()
    with pytest.raises(ValueError, match="max_hallucination must be in"):
        ServiceSettings(index_dir=tmp_path, max_hallucination=2.0)
