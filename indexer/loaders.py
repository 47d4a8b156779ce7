"""Document loaders: the first pipeline stage, files and folders → :class:`Document` records.

Text, Markdown, HTML and PDF files become one document each; JSONL, JSON and
CSV files one document per record. A document is named relative to the root
it was found under: the folder passed in, or the parent of a file passed in,
or for several paths the deepest folder holding them all (or one ``root`` for
every path), so ids survive moving the data and carry no server path; problems name the path as given, for the operator to find it.
Anything wrong with an input file (binary, not UTF-8, empty, too large,
malformed, unreadable, outside the allowed folders) is yielded as a :class:`LoadProblem` in its place; bad files never
raise, so one broken file doesn't stop an ingest. One job, so one module (HTML
parsing lives in :mod:`indexer.loaders_html`): walking the paths and turning each
format into records with the same checks. Example::

    from indexer.loaders import Document, load_paths
    for item in load_paths(["docs/", "faq.jsonl"], allowed_roots=["docs", "."]):
        if isinstance(item, Document):
            ...   # docs/guide/a.md is "docs/guide/a.md"; faq.jsonl's 3rd line "faq.jsonl#3" (or its id)
                  # (load_paths(["docs/"]) alone names it "guide/a.md")
        else:
            print(f"skipped {item.source}: {item.reason}")

PDF text comes from ``pypdf``; it is imported on first use, so the other
formats load without it.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from indexer.chunk_titles import one_line_title
from indexer.loaders_html import declared_charset, html_to_text

MetaValue = str | int | float | bool | None

SUPPORTED_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".json", ".jsonl", ".csv"})
NOT_TEXT = "not valid UTF-8 text (binary file?)"
TITLE_CHARS = 200
SNIFF_BYTES = 8192  # a NUL byte in this prefix marks a binary file


@dataclass(frozen=True)
class Document:
    doc_id: str
    """Stable id: the file's path relative to its root (posix), or for a record
    its id field, else ``path#n`` with that relative path."""
    text: str
    """The text as read (not yet normalized)."""
    source: str
    """The file's path relative to its root; ``path#n`` for the n-th record (line, list item or data row)."""
    metadata: dict[str, MetaValue]
    """``title`` (whole files; records: the title field's value when given), ``pages`` (PDF),
    record fields, and always ``format``."""


@dataclass(frozen=True)
class LoadProblem:
    source: str
    """The file path; ``path:line`` for a bad JSONL line or CSV row, ``path#n`` for a JSON list item."""
    reason: str


Item = Document | LoadProblem


@dataclass(frozen=True)
class _Options:
    text_field: str
    id_field: str
    max_file_bytes: int
    roots: tuple[str, ...] | None
    title_field: str | None = None


@dataclass(frozen=True)
class _Name:
    """A file's two names: ``doc`` relative to its root (ids and sources), ``shown`` as given (problems)."""

    doc: str
    shown: str

    def child(self, entry: str) -> _Name:
        return _Name(entry if self.doc == "." else posixpath.join(self.doc, entry),
                     entry if self.shown == "." else posixpath.join(self.shown, entry))


def load_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    text_field: str = "text",
    id_field: str = "id",
    max_file_bytes: int = 50_000_000,
    allowed_roots: Sequence[str | os.PathLike[str]] | None = None,
    root: str | os.PathLike[str] | None = None,
    title_field: str | None = None,
) -> Iterator[Item]:
    """Loads every path (a folder is walked recursively, entries sorted by name,
    hidden files and folders skipped), yielding documents and problems in order;
    never raises for a bad file.

    Documents are named relative to their root (see :func:`document_roots`):
    ``root`` when given (every path must lie inside it), else the folder
    passed in, or the parent of a file passed in; several paths, the deepest
    folder that holds them all.

    With ``allowed_roots``, a path whose real location (symlinks and ``..``
    resolved) is outside all of them is refused unopened, including files found
    while walking. Symlinked folders inside a walked folder are not followed.

    With ``title_field``, a JSON/JSONL/CSV record's value of that field (a
    non-empty string or a number) becomes its ``title`` metadata, the title an
    index with ``chunk_titles`` indexes every chunk under; a record without it
    keeps its own ``title`` field, if any.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError("paths must be a list of paths, not a single path; wrap it: load_paths([path])")
    for name, value in (("text_field", text_field), ("id_field", id_field)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} must be a non-empty string, got {value!r}")
    if title_field is not None and (not isinstance(title_field, str) or not title_field):
        raise TypeError(f"title_field must be a non-empty string or None, got {title_field!r}")
    if isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, int) or max_file_bytes <= 0:
        raise ValueError(f"max_file_bytes must be a positive integer, got {max_file_bytes!r}")
    roots = None if allowed_roots is None else tuple(os.path.realpath(r) for r in allowed_roots)
    paths = list(paths)
    bases = _bases(paths, root)  # raises now, not on first iteration
    return _load_all(paths, bases, _Options(text_field, id_field, max_file_bytes, roots, title_field))


def document_roots(paths: Iterable[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None) -> list[str]:
    """The real (absolute) roots documents of ``paths`` are named under, sorted:
    what an index records of an ingest."""
    return sorted({os.path.realpath(base) for base in _bases(list(paths), root)})


def _bases(paths: list[str | os.PathLike[str]], root: str | os.PathLike[str] | None) -> list[str]:
    """Each path's base. Several paths given together share one: the deepest folder
    holding all of their own bases, so that ``a/x.md`` and ``b/x.md`` ingested in one
    run stay two documents (each relative to its own folder, both would be ``x.md``)."""
    own = [_base(os.fspath(p), root) for p in paths]
    if root is not None or len(set(map(os.path.abspath, own))) < 2:
        return own
    shared = os.path.commonpath([os.path.abspath(b) for b in own])
    return [shared] * len(own)


def _base(path: str, root: str | os.PathLike[str] | None) -> str:
    """The folder names under ``path`` are made relative to."""
    if root is not None:
        base = os.fspath(root)
        if not os.path.isdir(base):
            raise ValueError(f"root {base} is not a folder; name the folder documents are named relative to")
        real, real_base = os.path.abspath(path), os.path.abspath(base)
        if real != real_base and not real.startswith(real_base.rstrip(os.sep) + os.sep):
            raise ValueError(f"{path} is not inside the root {base}; name documents relative to a folder "
                             "that holds every path, or leave out root")
        return base
    return path if os.path.isdir(path) else (os.path.dirname(path) or ".")


def _relative(path: str, base: str) -> str:
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
    return PurePath(rel).as_posix()


def _load_all(paths: list[str | os.PathLike[str]], bases: list[str], opts: _Options) -> Iterator[Item]:
    for path, base in zip(paths, bases):
        given = os.fspath(path)
        name = _Name(_relative(given, base), PurePath(given).as_posix())
        if _outside(given, opts.roots):
            yield LoadProblem(name.shown, "outside the allowed data directories")
        elif os.path.isdir(given):
            yield from _walk(given, name, opts)
        else:
            yield from _load_file(given, name, opts, explicit=True)


def _outside(path: str, roots: tuple[str, ...] | None) -> bool:
    if roots is None:
        return False
    real = os.path.realpath(path)
    return not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _walk(folder: str, name: _Name, opts: _Options) -> Iterator[Item]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield LoadProblem(name.shown, _os_reason(folder, exc))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        child = name.child(entry.name)
        if _outside(entry.path, opts.roots):
            yield LoadProblem(child.shown, "outside the allowed data directories")
        elif entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, child, opts)
        elif entry.is_symlink() and os.path.isdir(entry.path):
            # Not followed: it could loop, or lead anywhere when no roots are set.
            yield LoadProblem(child.shown, "symbolic link to a folder (not followed; name it explicitly to load it)")
        else:
            yield from _load_file(entry.path, child, opts, explicit=False)


def _os_reason(path: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError) and os.path.islink(path):
        return "broken symbolic link (its target does not exist)"
    return (exc.strerror or str(exc)).lower()


def _load_file(path: str, name: _Name, opts: _Options, *, explicit: bool) -> Iterator[Item]:
    suffix = PurePath(name.doc).suffix.lower()
    try:
        info = os.stat(path)
    except OSError as exc:
        yield LoadProblem(name.shown, _os_reason(path, exc))
        return
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        reason = f"unsupported file type {suffix or '(no suffix)'} (supported: {supported})"
        yield LoadProblem(name.shown, reason if explicit else "unsupported file type")
        return
    if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
        yield LoadProblem(name.shown, "not a regular file")
        return
    limit, data = opts.max_file_bytes, b""
    if info.st_size <= limit:
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except OSError as exc:
            yield LoadProblem(name.shown, _os_reason(path, exc))
            return
    if info.st_size > limit or len(data) > limit:  # the file may grow after stat
        size = max(info.st_size, len(data))
        yield LoadProblem(name.shown, f"larger than {_megabytes(limit)} ({_megabytes(size)}); raise max_file_bytes to load it")
        return
    yield from _LOADERS[suffix](data, name, suffix, opts)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:g} MB" if n >= 1_000_000 else f"{n} bytes"


def _decode(data: bytes) -> str | None:
    if b"\0" in data[:SNIFF_BYTES]:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)


def _title(text: str) -> str:
    """The first Markdown heading, else the first non-empty line."""
    match = _HEADING.search(text)
    line = match.group(1) if match else next((ln for ln in text.splitlines() if ln.strip()), "")
    return line.strip()[:TITLE_CHARS].rstrip()


def _unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def _front_matter(text: str) -> tuple[str, dict[str, MetaValue]]:
    """Splits off YAML front matter (``---`` … ``---``) as flat string metadata:
    ``key: value`` lines, lists (``[a, b]`` or ``- a`` lines) joined with ","."""
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return text, {}
    end = next((i for i in range(1, min(len(lines), 200)) if lines[i].rstrip() in ("---", "...")), None)
    if end is None:
        return text, {}
    meta: dict[str, MetaValue] = {}
    key = None
    for line in lines[1:end]:
        item = line.strip()
        if key is not None and item.startswith("- "):
            meta[key] = ",".join(filter(None, [str(meta[key] or ""), _unquote(item[2:])]))
            continue
        k, sep, value = line.partition(":")
        key = k.strip() if sep and k.strip() and not line[:1].isspace() else None
        if key is not None:
            value = value.strip()
            if value.startswith("[") and value.endswith("]"):
                value = ",".join(_unquote(v) for v in value[1:-1].split(",") if v.strip())
            meta[key] = _unquote(value)
    return "\n".join(lines[end + 1 :]), meta


def _load_text(data: bytes, name: _Name, suffix: str, opts: _Options) -> Iterator[Item]:
    text = _decode(data)
    if text is None:
        yield LoadProblem(name.shown, NOT_TEXT)
        return
    meta: dict[str, MetaValue] = {}
    if suffix in (".md", ".markdown"):
        text, meta = _front_matter(text)
    if not text.strip():
        yield LoadProblem(name.shown, "empty")
        return
    meta["title"] = str(meta.get("title") or _title(text))[:TITLE_CHARS]
    yield Document(name.doc, text, name.doc, {**meta, "format": suffix[1:]})


def _load_html(data: bytes, name: _Name, suffix: str, opts: _Options) -> Iterator[Item]:
    text = _decode(data)
    charset = declared_charset(data[:4096])
    if text is None and charset and b"\0" not in data[:SNIFF_BYTES]:
        try:
            text = data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    if text is None:
        yield LoadProblem(name.shown, NOT_TEXT)
        return
    try:
        body, title = html_to_text(text)
    except AssertionError as exc:  # html.parser's reaction to some broken markup
        yield LoadProblem(name.shown, f"malformed HTML: {exc}")
        return
    if not body.strip():
        yield LoadProblem(name.shown, "empty (no text outside markup)")
        return
    yield Document(name.doc, body, name.doc, {"title": (title or _title(body))[:TITLE_CHARS], "format": suffix[1:]})


def _read_pdf(data: bytes) -> tuple[list[str], str | None] | str:
    """``(page texts, metadata title)``, or the reason the PDF can't be read."""
    try:
        from pypdf import PasswordType, PdfReader
        from pypdf.errors import DependencyError
    except ImportError:
        return "PDF support needs the pypdf package: pip install 'pypdf>=5'"
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            return "encrypted PDF (needs a password; decrypt it first)"
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except DependencyError as exc:
        return f"encrypted PDF that needs an extra package to decrypt: {exc}"
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on corrupt input
        return f"unreadable PDF ({type(exc).__name__}: {exc})"
    return pages, str(title).strip() if title else None


def _load_pdf(data: bytes, name: _Name, suffix: str, opts: _Options) -> Iterator[Item]:
    result = _read_pdf(data)
    if isinstance(result, str):
        yield LoadProblem(name.shown, result)
        return
    pages, title = result
    text = "\n\n".join(pages)
    if not text.strip():
        yield LoadProblem(name.shown, f"no extractable text in {len(pages)} page(s) (scanned images? OCR it first)")
        return
    meta: dict[str, MetaValue] = {"title": (title or _title(text))[:TITLE_CHARS], "pages": len(pages)}
    yield Document(name.doc, text, name.doc, {**meta, "format": "pdf"})


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _record(record: dict, n: int, name: _Name, suffix: str, opts: _Options, where: str) -> Item:
    """One record as a document, or the problem with its text field."""
    text = record.get(opts.text_field)
    if text is None:
        return LoadProblem(where, f"field {opts.text_field!r} missing")
    if not isinstance(text, str):
        return LoadProblem(where, f"field {opts.text_field!r} is {_json_type(text)}, not a string")
    if not text.strip():
        return LoadProblem(where, f"field {opts.text_field!r} is empty")
    raw_id = record.get(opts.id_field)
    has_id = isinstance(raw_id, (str, int, float)) and not isinstance(raw_id, bool) and str(raw_id).strip()
    meta: dict[str, MetaValue] = {}
    for key, value in record.items():
        if key == opts.text_field or not isinstance(key, str):
            continue
        if value is None or isinstance(value, (str, int, float, bool)):
            meta[key] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            meta[key] = ",".join(value)
    title = _field_title(record.get(opts.title_field)) if opts.title_field else None
    if title:
        meta["title"] = title
    meta["format"] = suffix[1:]
    return Document(str(raw_id) if has_id else f"{name.doc}#{n}", text, f"{name.doc}#{n}", meta)


def _field_title(value: object) -> str | None:
    """A record's title field as a title: strings and numbers, on one line, capped."""
    title = one_line_title(value)
    return title[:TITLE_CHARS].rstrip() if title else None


def _load_jsonl(data: bytes, name: _Name, suffix: str, opts: _Options) -> Iterator[Item]:
    if b"\0" in data[:SNIFF_BYTES]:
        yield LoadProblem(name.shown, NOT_TEXT)
        return
    seen = False
    for line_no, raw in enumerate(data.removeprefix(codecs.BOM_UTF8).split(b"\n"), start=1):
        if not raw.strip():
            continue
        seen = True
        where = f"{name.shown}:{line_no}"
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield LoadProblem(where, "not valid UTF-8")
            continue
        except (ValueError, RecursionError) as exc:
            yield LoadProblem(where, f"malformed JSON: {exc}")
            continue
        if not isinstance(record, dict):
            yield LoadProblem(where, f"expected a JSON object, got {_json_type(record)}")
            continue
        yield _record(record, line_no, name, suffix, opts, where)
    if not seen:
        yield LoadProblem(name.shown, "empty")


def _json_records(value: object, text_field: str) -> list | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in ("documents", "data"):
            if isinstance(value.get(key), list):
                return value[key]
        if text_field in value:
            return [value]
    return None


def _load_json(data: bytes, name: _Name, suffix: str, opts: _Options) -> Iterator[Item]:
    text = _decode(data)
    if text is None or not text.strip():
        yield LoadProblem(name.shown, NOT_TEXT if text is None else "empty")
        return
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        yield LoadProblem(name.shown, f"malformed JSON: {exc}")
        return
    records = _json_records(value, opts.text_field)
    if records is None:
        yield LoadProblem(name.shown, f"expected a list of objects, an object with a 'documents' or 'data' list, "
                                f"or an object with a {opts.text_field!r} field; got {_json_type(value)}")
        return
    if not records:
        yield LoadProblem(name.shown, "empty (no records)")
    for n, record in enumerate(records, start=1):
        if isinstance(record, dict):
            yield _record(record, n, name, suffix, opts, f"{name.shown}#{n}")
        else:
            yield LoadProblem(f"{name.shown}#{n}", f"expected a JSON object, got {_json_type(record)}")


def _load_csv(data: bytes, name: _Name, suffix: str, opts: _Options) -> Iterator[Item]:
    text = _decode(data)
    if text is None:
        yield LoadProblem(name.shown, NOT_TEXT)
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    row = 0
    try:
        columns = reader.fieldnames
        if not columns:
            yield LoadProblem(name.shown, "empty")
            return
        if opts.text_field not in columns:
            yield LoadProblem(name.shown, f"no column {opts.text_field!r} (columns: {', '.join(columns)}); "
                                    "pass text_field to use another")
            return
        for row, record in enumerate(reader, start=1):
            yield _record(record, row, name, suffix, opts, f"{name.shown}:{row}")
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit(); the rest of the file is skipped
        yield LoadProblem(f"{name.shown}:{row + 1}", f"malformed CSV: {exc}")
        return
    if row == 0:
        yield LoadProblem(name.shown, "empty (header only)")


_Loader = Callable[[bytes, _Name, str, _Options], Iterator[Item]]
_LOADERS: dict[str, _Loader] = {
    ".txt": _load_text, ".md": _load_text, ".markdown": _load_text, ".html": _load_html, ".htm": _load_html,
    ".pdf": _load_pdf, ".jsonl": _load_jsonl, ".json": _load_json, ".csv": _load_csv,
}
