"""The BEIR file format: a corpus, queries and graded relevance judgements.

    corpus.jsonl     {"_id": "d1", "title": "...", "text": "..."}   (title optional)
    queries.jsonl    {"_id": "q1", "text": "..."}
    qrels/test.tsv   query-id<TAB>corpus-id<TAB>score                (header line first)

Scores are integers; a score above 0 marks a relevant document (several grades
allowed), 0 a judged non-relevant one. Any malformed line raises
:class:`BeirFormatError`, whose message starts with ``FILE:LINE:``. A pair
judged twice is not malformed: published sets (LiveQA-Med 2017 over MedQuAD)
hold a few, so the highest grade is kept and one warning logged, unless the
reader is asked to be strict.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

QRELS_HEADER = ("query-id", "corpus-id", "score")

log = logging.getLogger(__name__)


class BeirFormatError(ValueError):
    """A BEIR file that cannot be read; the message names the file and line."""

    def __init__(self, path: Path | str, line: int, problem: str):
        super().__init__(f"{path}:{line}: {problem}")
        self.path = Path(path)
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class CorpusDoc:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class BeirSet:
    corpus: dict[str, CorpusDoc]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    """query id -> {corpus id: graded relevance}"""

    def relevant(self, query_id: str) -> dict[str, int]:
        """The query's documents with a grade above 0."""
        return {d: r for d, r in self.qrels.get(query_id, {}).items() if r > 0}

    def judged_queries(self) -> list[str]:
        """Query ids, in file order, that have at least one relevant document."""
        return [q for q in self.queries if self.relevant(q)]


def take_queries(beir: BeirSet, n: int | None) -> BeirSet:
    """The first ``n`` judged queries with their qrels; the corpus is kept whole."""
    if n is None:
        return beir
    if n < 1:
        raise ValueError(f"the number of queries must be positive, got {n}")
    keep = beir.judged_queries()[:n]
    return BeirSet(beir.corpus, {q: beir.queries[q] for q in keep}, {q: dict(beir.qrels[q]) for q in keep})


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BeirFormatError(path, line_no, f"malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise BeirFormatError(path, line_no, f"expected a JSON object, got {type(record).__name__}")
            yield line_no, record


def _id(path: Path, line_no: int, record: dict[str, object]) -> str:
    value = record.get("_id")
    if value is None:
        raise BeirFormatError(path, line_no, 'missing "_id"')
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise BeirFormatError(path, line_no, f'"_id" must be a non-empty string, got {value!r}')
    return str(value)


def _str_field(path: Path, line_no: int, record: dict[str, object], key: str, *, required: bool) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise BeirFormatError(path, line_no, f'missing "{key}"')
        return ""
    if not isinstance(value, str):
        raise BeirFormatError(path, line_no, f'"{key}" must be a string, got {type(value).__name__}')
    return value


def read_corpus(path: Path | str) -> dict[str, CorpusDoc]:
    path = Path(path)
    corpus: dict[str, CorpusDoc] = {}
    for line_no, record in _json_lines(path):
        doc_id = _id(path, line_no, record)
        if doc_id in corpus:
            raise BeirFormatError(path, line_no, f"duplicate corpus id {doc_id!r}")
        title = _str_field(path, line_no, record, "title", required=False)
        corpus[doc_id] = CorpusDoc(doc_id, title, _str_field(path, line_no, record, "text", required=True))
    return corpus


def read_queries(path: Path | str) -> dict[str, str]:
    path = Path(path)
    queries: dict[str, str] = {}
    for line_no, record in _json_lines(path):
        query_id = _id(path, line_no, record)
        if query_id in queries:
            raise BeirFormatError(path, line_no, f"duplicate query id {query_id!r}")
        queries[query_id] = _str_field(path, line_no, record, "text", required=True)
    return queries


def read_qrels(
    path: Path | str, queries: dict[str, str], corpus: dict[str, CorpusDoc], *, strict: bool = False
) -> dict[str, dict[str, int]]:
    """The judgements by query. A pair judged again keeps its highest grade
    (one warning gives the count), or with ``strict`` raises on the repeat."""
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    repeats: list[int] = []
    with path.open(encoding="utf-8") as f:
        header = f.readline()
        if tuple(header.rstrip("\r\n").split("\t")) != QRELS_HEADER:
            raise BeirFormatError(path, 1, f"expected the header {'<TAB>'.join(QRELS_HEADER)!r}, got {header.rstrip()!r}")
        for line_no, line in enumerate(f, start=2):
            if not line.strip():
                continue
            cells = line.rstrip("\r\n").split("\t")
            if len(cells) != 3:
                raise BeirFormatError(path, line_no, f"expected 3 tab-separated fields, got {len(cells)}")
            query_id, doc_id, score = cells
            try:
                grade = int(score)
            except ValueError:
                raise BeirFormatError(path, line_no, f"score must be an integer, got {score!r}") from None
            if query_id not in queries:
                raise BeirFormatError(path, line_no, f"unknown query id {query_id!r}")
            if doc_id not in corpus:
                raise BeirFormatError(path, line_no, f"unknown corpus id {doc_id!r}")
            judged = qrels.setdefault(query_id, {})
            if doc_id in judged:
                if strict:
                    raise BeirFormatError(
                        path, line_no, f"duplicate judgement of ({query_id!r}, {doc_id!r}), first judged on line "
                        f"{first_line[query_id, doc_id]}; remove one, or leave out --strict-qrels to keep the highest grade",
                    )
                repeats.append(line_no)
                judged[doc_id] = max(judged[doc_id], grade)
                continue
            judged[doc_id] = grade
            first_line[query_id, doc_id] = line_no
    if repeats:
        log.warning("%s: %d judgements repeat a query-document pair already judged (first on line %d); "
                    "kept the highest grade of each", path, len(repeats), repeats[0])
    return qrels


def read_beir(
    corpus_path: Path | str, queries_path: Path | str, qrels_path: Path | str, *, strict_qrels: bool = False
) -> BeirSet:
    corpus = read_corpus(corpus_path)
    queries = read_queries(queries_path)
    return BeirSet(corpus, queries, read_qrels(qrels_path, queries, corpus, strict=strict_qrels))


def write_beir(beir: BeirSet, directory: Path | str) -> tuple[Path, Path, Path]:
    """Writes ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/test.tsv`` under ``directory``."""
    directory = Path(directory)
    corpus_path, queries_path = directory / "corpus.jsonl", directory / "queries.jsonl"
    qrels_path = directory / "qrels" / "test.tsv"
    qrels_path.parent.mkdir(parents=True, exist_ok=True)
    with corpus_path.open("w", encoding="utf-8") as f:
        for doc in beir.corpus.values():
            f.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text}, ensure_ascii=False) + "\n")
    with queries_path.open("w", encoding="utf-8") as f:
        for query_id, text in beir.queries.items():
            f.write(json.dumps({"_id": query_id, "text": text}, ensure_ascii=False) + "\n")
    with qrels_path.open("w", encoding="utf-8") as f:
        f.write("\t".join(QRELS_HEADER) + "\n")
        for query_id, judged in beir.qrels.items():
            for doc_id, grade in judged.items():
                if any(c in i for i in (query_id, doc_id) for c in "\t\r\n"):
                    raise ValueError(f"ids written to a qrels TSV cannot hold tabs or line breaks: {query_id!r}, {doc_id!r}")
                f.write(f"{query_id}\t{doc_id}\t{grade}\n")
    return corpus_path, queries_path, qrels_path
