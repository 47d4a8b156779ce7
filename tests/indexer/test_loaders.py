"""Document loaders on real files written here: every format, folder walks, and bad input as problems."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from indexer.loaders import SUPPORTED_SUFFIXES, Document, LoadProblem, document_roots, load_paths


def load(*paths: str | Path, **kwargs) -> list[Document | LoadProblem]:
    return list(load_paths([*paths], **kwargs))


def load_docs(*paths: str | Path, **kwargs) -> list[Document]:
    """Loads files that must all succeed."""
    items = load(*paths, **kwargs)
    assert problems(items) == {}
    return docs(items)


def problems(items: list[Document | LoadProblem]) -> dict[str, str]:
    return {p.source: p.reason for p in items if isinstance(p, LoadProblem)}


def docs(items: list[Document | LoadProblem]) -> list[Document]:
    return [d for d in items if isinstance(d, Document)]


def minimal_pdf(text: str, title: str | None = None) -> bytes:
    """A one-page PDF showing ``text`` in Helvetica, xref offsets computed here."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
    ]
    if title is not None:
        objects.append(b"<< /Title (" + title.encode() + b") >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += str(number).encode() + b" 0 obj\n" + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    info = f" /Info {len(objects)} 0 R" if title is not None else ""
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password, owner_password="owner", algorithm="RC4-128")  # RC4 needs no extra package
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Relative paths in tests resolve under tmp_path, so ids stay short and stable."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_text_and_markdown(in_tmp: Path) -> None:
    (in_tmp / "notes.txt").write_text("\n\n  Asthma basics  \nThe airways narrow.\n", encoding="utf-8")
    (in_tmp / "guide.md").write_bytes("\ufeffIntro line\n\n## Dosage ##\n\nTake *two*.\n".encode())
    txt, md = load_docs("notes.txt", "guide.md")
    assert txt == Document("notes.txt", "\n\n  Asthma basics  \nThe airways narrow.\n", "notes.txt",
                           {"title": "Asthma basics", "format": "txt"})
    assert md.doc_id == "guide.md" and md.text.startswith("Intro line")  # BOM dropped
    assert md.metadata == {"title": "Dosage", "format": "md"}


def test_markdown_front_matter_becomes_metadata(in_tmp: Path) -> None:
    (in_tmp / "a.markdown").write_text(
        "---\ntitle: \"Inhaler use\"\ntags: [asthma, devices]\ndate: 2024-05-01\naliases:\n  - puffer\n  - spacer\n"
        "---\nBody text.\n", encoding="utf-8")
    (doc,) = load_docs("a.markdown")
    assert doc.text == "Body text.\n"
    assert doc.metadata == {"title": "Inhaler use", "tags": "asthma,devices", "date": "2024-05-01",
                            "aliases": "puffer,spacer", "format": "markdown"}
    (in_tmp / "long.md").write_text("x" * 500, encoding="utf-8")
    assert len(str(load_docs("long.md")[0].metadata["title"])) == 200


def test_html_text_without_markup(in_tmp: Path) -> None:
    (in_tmp / "page.html").write_text(
        "<!doctype html><html><head><title> Side  effects </title><style>p{color:red}</style>"
        "<script>var x = '<p>not text</p>';</script></head><body>"
        "<h1>Side effects</h1><p>Nausea &amp; headache&nbsp;may occur.</p><ul><li>rest</li><li>water</li></ul>"
        "<noscript>enable JS</noscript><template><p>hidden</p></template>line<br>break"
        "<table><tr><td>a</td><td>b</td></tr></table><pre>  keep\n    indent</pre></body></html>",
        encoding="utf-8")
    (doc,) = load_docs("page.html")
    assert doc.metadata == {"title": "Side effects", "format": "html"}
    assert doc.text == ("Side effects\n\nNausea & headache\u00a0may occur.\n\nrest\nwater\n\nline\nbreak\n\n"
                        "a b\n\n  keep\n    indent")


def test_html_in_declared_charset_and_without_title(in_tmp: Path) -> None:
    (in_tmp / "old.htm").write_bytes('<meta charset="windows-1252"><p>Caf\xe9 au lait</p>'.encode("cp1252"))
    (doc,) = load_docs("old.htm")
    assert doc.text == "Café au lait" and doc.metadata == {"title": "Café au lait", "format": "htm"}
    (in_tmp / "blank.html").write_text("<html><head><title>Only a title</title></head><body> </body></html>")
    assert problems(load("blank.html")) == {"blank.html": "empty (no text outside markup)"}


def test_pdf_text_title_and_pages(in_tmp: Path) -> None:
    (in_tmp / "leaflet.pdf").write_bytes(minimal_pdf("Take with food.", title="Patient leaflet"))
    (in_tmp / "untitled.pdf").write_bytes(minimal_pdf("Second leaflet"))
    leaflet, untitled = load_docs("leaflet.pdf", "untitled.pdf")
    assert leaflet.doc_id == "leaflet.pdf" and leaflet.text.strip() == "Take with food."
    assert leaflet.metadata == {"title": "Patient leaflet", "pages": 1, "format": "pdf"}
    assert untitled.metadata["title"] == "Second leaflet"  # falls back to the first line


def test_pdf_problems(in_tmp: Path) -> None:
    blank = io.BytesIO()
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    writer.write(blank)
    (in_tmp / "scan.pdf").write_bytes(blank.getvalue())
    (in_tmp / "locked.pdf").write_bytes(encrypted(minimal_pdf("Secret dose"), user_password="s3cret"))
    (in_tmp / "owner_only.pdf").write_bytes(encrypted(minimal_pdf("Open dose"), user_password=""))
    (in_tmp / "garbage.pdf").write_bytes(b"%PDF-1.7\nthis is not really a pdf\n" * 3)
    items = load("scan.pdf", "locked.pdf", "owner_only.pdf", "garbage.pdf")
    assert [d.text.strip() for d in docs(items)] == ["Open dose"]  # an empty user password opens it
    found = problems(items)
    assert found["scan.pdf"].startswith("no extractable text in 1 page(s)")
    assert found["locked.pdf"].startswith("encrypted PDF (needs a password")
    assert found["garbage.pdf"].startswith("unreadable PDF (")


def test_jsonl_records_and_bad_lines(in_tmp: Path) -> None:
    lines = [
        json.dumps({"id": "faq-1", "text": "What is asthma?", "tags": ["lungs", "faq"], "year": 2024,
                    "score": 0.5, "reviewed": True, "note": None, "nested": {"a": 1}, "mixed": [1, "x"]}),
        "",
        json.dumps({"text": "No id here.", "id": ""}),
        '{"id": "broken", "text": ',
        json.dumps({"id": "x"}),
        json.dumps({"text": 42}),
        json.dumps({"text": "   "}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"id": 7, "text": "Numeric id."}),
    ]
    (in_tmp / "faq.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = load("faq.jsonl")
    assert [(d.doc_id, d.source, d.text) for d in docs(items)] == [
        ("faq-1", "faq.jsonl#1", "What is asthma?"),
        ("faq.jsonl#3", "faq.jsonl#3", "No id here."),
        ("7", "faq.jsonl#9", "Numeric id."),
    ]
    assert docs(items)[0].metadata == {"id": "faq-1", "tags": "lungs,faq", "year": 2024, "score": 0.5,
                                       "reviewed": True, "note": None, "format": "jsonl"}
    found = problems(items)
    assert found["faq.jsonl:4"].startswith("malformed JSON: ")
    assert found == {
        "faq.jsonl:4": found["faq.jsonl:4"],
        "faq.jsonl:5": "field 'text' missing",
        "faq.jsonl:6": "field 'text' is a number, not a string",
        "faq.jsonl:7": "field 'text' is empty",
        "faq.jsonl:8": "expected a JSON object, got an array",
    }


def test_custom_fields(in_tmp: Path) -> None:
    (in_tmp / "q.jsonl").write_text(json.dumps({"key": "k1", "body": "Answer.", "text": "ignored"}) + "\n")
    (doc,) = load_docs("q.jsonl", text_field="body", id_field="key")
    assert doc.doc_id == "k1" and doc.text == "Answer." and doc.metadata["text"] == "ignored"


def test_json_shapes(in_tmp: Path) -> None:
    (in_tmp / "list.json").write_text(json.dumps([{"id": "a", "text": "First."}, {"text": "Second."}, 3]))
    (in_tmp / "wrapped.json").write_text(json.dumps({"documents": [{"text": "Wrapped.", "title": "W"}]}))
    (in_tmp / "data.json").write_text(json.dumps({"data": [{"text": "Data."}]}))
    (in_tmp / "single.json").write_text(json.dumps({"id": "one", "text": "Single."}))
    (in_tmp / "odd.json").write_text(json.dumps({"items": []}))
    (in_tmp / "bad.json").write_text("{not json")
    items = load("list.json", "wrapped.json", "data.json", "single.json", "odd.json", "bad.json")
    assert [(d.doc_id, d.text) for d in docs(items)] == [
        ("a", "First."), ("list.json#2", "Second."), ("wrapped.json#1", "Wrapped."), ("data.json#1", "Data."),
        ("one", "Single."),
    ]
    assert docs(items)[2].metadata == {"title": "W", "format": "json"}
    found = problems(items)
    assert found["list.json#3"] == "expected a JSON object, got a number"
    assert found["odd.json"].startswith("expected a list of objects")
    assert found["bad.json"].startswith("malformed JSON: ")


def test_csv_rows(in_tmp: Path) -> None:
    (in_tmp / "rows.csv").write_bytes('\ufeffid,text,lang\nr1,"Line one, with comma",en\n,Second row,de\nr3,,fr\n'
                                      .encode())
    (in_tmp / "nocol.csv").write_text("id,body\n1,hello\n")
    items = load("rows.csv", "nocol.csv")
    assert [(d.doc_id, d.source, d.text, d.metadata) for d in docs(items)] == [
        ("r1", "rows.csv#1", "Line one, with comma", {"id": "r1", "lang": "en", "format": "csv"}),
        ("rows.csv#2", "rows.csv#2", "Second row", {"id": "", "lang": "de", "format": "csv"}),
    ]
    assert problems(items) == {
        "rows.csv:3": "field 'text' is empty",
        "nocol.csv": "no column 'text' (columns: id, body); pass text_field to use another",
    }


def test_folder_walk_order_ids_and_hidden_files(in_tmp: Path) -> None:
    root = in_tmp / "docs"
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.txt").write_text("hidden folder")
    (root / ".secret.md").write_text("hidden file")
    (root / "z.txt").write_text("zed")
    (root / "a.md").write_text("# A")
    (root / "b" / "deep" / "c.txt").write_text("see")
    (root / "b" / "image.png").write_bytes(b"\x89PNG")
    items = load("docs/")
    # documents are named relative to the folder passed in; problems by the path as given
    assert [(type(i).__name__, i.source) for i in items] == [
        ("Document", "a.md"),
        ("Document", "b/deep/c.txt"),
        ("LoadProblem", "docs/b/image.png"),
        ("Document", "z.txt"),
    ]
    assert [d.doc_id for d in docs(items)] == ["a.md", "b/deep/c.txt", "z.txt"]
    assert problems(items) == {"docs/b/image.png": "unsupported file type"}
    # the same ids from an absolute path, from another working folder, and after the folder moves
    assert [d.doc_id for d in docs(load(root))] == ["a.md", "b/deep/c.txt", "z.txt"]
    # given together with the folder above it, a file has one name whichever path found it
    assert [d.doc_id for d in docs(load("./docs/", "."))] == [
        "docs/a.md", "docs/b/deep/c.txt", "docs/z.txt"] * 2
    moved = in_tmp / "elsewhere" / "library"
    moved.parent.mkdir()
    root.rename(moved)
    assert [d.doc_id for d in docs(load(moved))] == ["a.md", "b/deep/c.txt", "z.txt"]
    # a file passed in is named relative to its parent
    assert [d.doc_id for d in docs(load(moved / "b" / "deep" / "c.txt"))] == ["c.txt"]


def test_root_names_documents_under_it(in_tmp: Path) -> None:
    (in_tmp / "data" / "cardio").mkdir(parents=True)
    (in_tmp / "data" / "cardio" / "bp.md").write_text("# Blood pressure")
    (in_tmp / "data" / "faq.jsonl").write_text(json.dumps({"text": "A."}) + "\n" + json.dumps({"id": "q2", "text": "B."}))
    items = load(in_tmp / "data" / "cardio", "data/faq.jsonl", root=in_tmp / "data")
    assert [(d.doc_id, d.source) for d in docs(items)] == [
        ("cardio/bp.md", "cardio/bp.md"), ("faq.jsonl#1", "faq.jsonl#1"), ("q2", "faq.jsonl#2")]
    assert not any(str(in_tmp) in d.doc_id + d.source for d in docs(items))
    with pytest.raises(ValueError, match="not inside the root"):
        load_paths([in_tmp], root=in_tmp / "data")
    with pytest.raises(ValueError, match="not a folder"):
        load_paths(["data/faq.jsonl"], root="data/faq.jsonl")


def test_bad_files_become_problems(in_tmp: Path) -> None:
    (in_tmp / "binary.txt").write_bytes(b"abc\x00def")
    (in_tmp / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    (in_tmp / "empty.txt").write_bytes(b"")
    (in_tmp / "blank.md").write_text(" \n\t\n")
    (in_tmp / "big.txt").write_text("x" * 101)
    (in_tmp / "ok.txt").write_text("fits")
    (in_tmp / "table.xlsx").write_bytes(b"PK")
    (in_tmp / "empty.jsonl").write_text("\n\n")
    os.symlink("gone.txt", in_tmp / "dangling.txt")
    items = load("binary.txt", "latin1.md", "empty.txt", "blank.md", "big.txt", "ok.txt", "table.xlsx",
                 "missing.md", "dangling.txt", "empty.jsonl", "ok.txt/inner.md", max_file_bytes=100)
    assert [d.doc_id for d in docs(items)] == ["ok.txt"]
    found = problems(items)
    assert found == {
        "binary.txt": "not valid UTF-8 text (binary file?)",
        "latin1.md": "not valid UTF-8 text (binary file?)",
        "empty.txt": "empty",
        "blank.md": "empty",
        "big.txt": "larger than 100 bytes (101 bytes); raise max_file_bytes to load it",
        "table.xlsx": found["table.xlsx"],
        "missing.md": "no such file or directory",
        "dangling.txt": "broken symbolic link (its target does not exist)",
        "empty.jsonl": "empty",
        "ok.txt/inner.md": "not a directory",
    }
    assert found["table.xlsx"].startswith("unsupported file type .xlsx (supported: .csv, .htm, .html")
    assert all(s in found["table.xlsx"] for s in SUPPORTED_SUFFIXES)


def test_size_limit_message_in_megabytes(in_tmp: Path) -> None:
    (in_tmp / "huge.txt").write_bytes(b"x" * 3_000_001)
    assert problems(load("huge.txt", max_file_bytes=2_000_000)) == {
        "huge.txt": "larger than 2 MB (3 MB); raise max_file_bytes to load it"}


def test_fifo_is_not_opened(in_tmp: Path) -> None:
    os.mkfifo(in_tmp / "pipe.txt")  # opening it for reading would block
    assert problems(load("pipe.txt")) == {"pipe.txt": "not a regular file"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied(in_tmp: Path) -> None:
    path = in_tmp / "private.txt"
    path.write_text("secret")
    path.chmod(0)
    try:
        assert problems(load("private.txt")) == {"private.txt": "permission denied"}
    finally:
        path.chmod(0o600)


def test_allowed_roots_refuse_escapes_without_opening(in_tmp: Path) -> None:
    data, outside = in_tmp / "data", in_tmp / "outside"
    data.mkdir()
    outside.mkdir()
    (outside / "passwd.txt").write_text("root:x:0:0")
    (data / "ok.md").write_text("# Fine")
    os.symlink(outside / "passwd.txt", data / "link.txt")
    os.symlink(outside, data / "linked_dir")
    roots = ["data"]
    items = load("data", "data/../outside/passwd.txt", "data/link.txt", "outside", "outside/nonexistent.txt",
                 allowed_roots=roots)
    assert [d.doc_id for d in docs(items)] == ["data/ok.md"]  # several paths: named under the folder above them
    refused = "outside the allowed data directories"
    assert problems(items) == {
        "data/link.txt": refused,  # found while walking, and named explicitly
        "data/linked_dir": refused,
        "data/../outside/passwd.txt": refused,
        "outside": refused,
        "outside/nonexistent.txt": refused,  # refused before it is even looked at
    }
    # Inside the roots, symlinks work; symlinked folders met while walking are reported, not followed.
    items = load("data", allowed_roots=[in_tmp])
    assert [d.doc_id for d in docs(items)] == ["link.txt", "ok.md"]
    assert problems(items) == {"data/linked_dir": "symbolic link to a folder (not followed; name it explicitly to load it)"}
    assert [d.doc_id for d in docs(load("data/linked_dir", allowed_roots=[in_tmp]))] == ["passwd.txt"]


def test_programming_errors_raise() -> None:
    with pytest.raises(TypeError, match="not a single path"):
        load_paths("docs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_file_bytes"):
        load_paths([], max_file_bytes=0)
    with pytest.raises(TypeError, match="text_field"):
        load_paths([], text_field="")


def test_several_paths_share_one_root(tmp_path: Path) -> None:
    """Two folders given together, each with an x.md, stay two documents: both are named
    under the folder that holds them, not each under its own (where both would be x.md)."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.md").write_text(f"notes of {name}\n", encoding="utf-8")
    together = {d.doc_id for d in load_paths([tmp_path / "a", tmp_path / "b"]) if isinstance(d, Document)}
    assert together == {"a/x.md", "b/x.md"}
    assert {d.doc_id for d in load_paths([tmp_path / "a"]) if isinstance(d, Document)} == {"x.md"}
    assert document_roots([tmp_path / "a", tmp_path / "b"]) == [os.path.realpath(tmp_path)]
