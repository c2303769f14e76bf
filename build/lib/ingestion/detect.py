"""What a file really is, from its bytes first and its name second.

A ``.txt`` that is really a PDF is a PDF; an image or an archive is refused whatever its
name; bytes that decode to no sensible text are refused by the processing job. Pure:
no Django, no I/O.
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass
from pathlib import PurePath

from charset_normalizer import from_bytes

PDF, HTML, CSV, JSON, MARKDOWN, TEXT = (
    "application/pdf", "text/html", "text/csv", "application/json", "text/markdown", "text/plain",
)  # fmt: skip
SUPPORTED = (PDF, HTML, CSV, JSON, MARKDOWN, TEXT)
SUPPORTED_HINT = "Upload plain text, Markdown, HTML, CSV, JSON or PDF."

# Formats we recognise and do not process: refused at upload (415) with their name.
_KNOWN_BINARY = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "a program (ELF)"),
    (b"MZ", "a Windows program"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document"),
    (b"ID3", "an MP3 file"),
    (b"OggS", "an Ogg media file"),
    (b"RIFF", "a RIFF media file (WAV, AVI, WebP)"),
]
_UNSUPPORTED_EXTENSIONS = {
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tiff", ".zip", ".gz", ".tgz", ".7z", ".rar", ".exe",
    ".dll", ".so", ".bin", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".mp3", ".mp4", ".wav",
    ".avi", ".mov",
}  # fmt: skip
_BOMS = [
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]


class NotSupported(Exception):
    """The content is not something we can extract text from: the message says what is
    wrong, the hint what the uploader can do."""

    def __init__(self, message: str, hint: str = SUPPORTED_HINT) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def refuse_at_upload(head: bytes, name: str) -> str | None:
    """Why an upload is refused before it is stored (415), or None. Only what is certain
    from the first bytes and the name: everything else is the processing job's call."""
    for magic, what in _KNOWN_BINARY:
        if head.startswith(magic):
            return f"This file is {what}, which is not supported."
    if is_pdf(head):
        return None
    extension = PurePath(name).suffix.lower()
    if extension in _UNSUPPORTED_EXTENSIONS:
        return f"Files of type {extension} are not supported."
    return None


def is_pdf(data: bytes) -> bool:
    """The PDF header opens the file (after whitespace at most): a text that merely
    mentions "%PDF-" is no PDF."""
    return data[:1024].lstrip().startswith(b"%PDF-")


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str


def decode_text(data: bytes) -> Decoded:
    """Bytes → text: a BOM if there is one, else UTF-8, else what charset-normalizer finds.
    Raises NotSupported for bytes that are no text in any encoding."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _checked(data.decode(encoding, errors="replace"), encoding)
    try:
        return _checked(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    best = from_bytes(data[:1_000_000]).best()  # a sample is enough to name the encoding
    if best is None or best.encoding is None:
        raise NotSupported("The file is not text in any encoding we know (it looks like binary data).")
    return _checked(data.decode(best.encoding, errors="replace"), best.encoding)


def _checked(text: str, encoding: str) -> Decoded:
    sample = text[:100_000]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f\v") + sample.count("\ufffd")
    if sample and controls / len(sample) > 0.02:
        raise NotSupported("The file is not text: it is full of control characters (binary data?).")
    return Decoded(text, encoding)


def text_kind(text: str, name: str) -> str:
    """HTML, JSON or CSV when the content says so; Markdown by name; else plain text."""
    extension = PurePath(name).suffix.lower()
    head = text[:4000].lstrip()[:2000].lower()
    if head.startswith(("{", "[")) and text.rstrip()[-1:] in ("}", "]"):
        return JSON  # by its shape; parsed once, when rendered (a failed parse is plain text)
    if head.startswith(("<!doctype html", "<html")) or (extension in {".html", ".htm"} and "<" in head):
        return HTML
    if extension in {".md", ".markdown"}:
        return MARKDOWN
    if _looks_like_csv(text, extension):
        return CSV
    return TEXT


def _looks_like_csv(text: str, extension: str) -> bool:
    """Named .csv and parses as a table; or, whatever the name, clearly a table (at least
    five rows of the same three or more columns) — prose with commas is not."""
    lines = [line for line in text[:20_000].splitlines() if line.strip()][:20]
    if extension == ".csv":
        return bool(lines)
    if len(lines) < 5:
        return False
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|")
    except csv.Error:
        return False
    widths = {len(row) for row in csv.reader(lines, dialect)}
    return len(widths) == 1 and widths.pop() >= 3
