"""Retrieval evaluation: BEIR-format sets, metrics, set builders from the shared
data, and a runner that measures an index's search modes.

    python -m indexer.evaluation.builders covidqa /tmp/covidqa
    indexer eval --set covidqa --modes bm25 --limit 200
"""

from indexer.evaluation.beir import BeirFormatError, BeirSet, CorpusDoc, read_beir, write_beir
from indexer.evaluation.metrics import evaluate_run, mrr_at_k, ndcg_at_k, recall_at_k

__all__ = [
    "BeirFormatError", "BeirSet", "CorpusDoc", "evaluate_run", "mrr_at_k", "ndcg_at_k",
    "read_beir", "recall_at_k", "write_beir",
]
