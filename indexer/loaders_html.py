"""Plain text and title of an HTML page with the standard library's parser.

Used by :mod:`indexer.loaders`; no third-party dependency. Markup is dropped,
entities are unescaped, block elements become line breaks (paragraph-level
ones a blank line, so the chunker can cut there) and ``<pre>`` keeps its
whitespace. Script, style, noscript and template content is skipped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "math"})
LINE_BREAKS = frozenset({"br", "li", "tr", "dt", "dd", "option", "caption", "figcaption"})
PARAGRAPHS = frozenset({
    "address", "article", "aside", "blockquote", "body", "details", "dialog", "div", "dl", "fieldset",
    "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav", "ol",
    "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "ul",
})
CELLS = frozenset({"td", "th"})
_SPACES = re.compile(r"[ \t\r\n\f\v]+")  # HTML whitespace; NBSP stays


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skip = 0  # depth inside skipped elements
        self._pre = 0
        self._in_title = False

    def _break(self, newlines: str) -> None:
        if not self.parts:
            return
        if self.parts[-1] in ("\n", "\n\n"):  # adjacent breaks merge: </li><li> is one line break
            self.parts[-1] = max(self.parts[-1], newlines, key=len)
        else:
            self.parts[-1] = self.parts[-1].rstrip(" ")
            self.parts.append(newlines)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in PARAGRAPHS:
            self._break("\n\n")
            self._pre += tag == "pre"
        elif tag == "br" and self.parts:  # appended, not merged: <br><br> is a paragraph break
            self.parts[-1] = self.parts[-1].rstrip(" ")
            self.parts.append("\n")
        elif tag in LINE_BREAKS:
            self._break("\n")
        elif tag in CELLS and self.parts and not self.parts[-1].endswith(("\n", " ")):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in PARAGRAPHS:
            self._pre = max(0, self._pre - (tag == "pre"))
            self._break("\n\n")
        elif tag in LINE_BREAKS and tag != "br":
            self._break("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title_parts.append(data)
        elif self._pre:
            self.parts.append(data)
        else:
            text = _SPACES.sub(" ", data)
            if not self.parts or self.parts[-1].endswith(("\n", " ")):
                text = text.lstrip(" ")
            if text:
                self.parts.append(text)


def html_to_text(html: str) -> tuple[str, str]:
    """``(text, title)`` of an HTML document; either may be empty."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.rstrip() for line in "".join(parser.parts).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    title = _SPACES.sub(" ", "".join(parser.title_parts)).strip()
    return text, title


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def declared_charset(head: bytes) -> str | None:
    """The charset an HTML page declares in a ``<meta>`` tag, if any."""
    match = _META_CHARSET.search(head)
    return match.group(1).decode("ascii").lower() if match else None
