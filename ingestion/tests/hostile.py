"""Small files built to cost a reader a lot: the cases ``ingestion.budget`` stops."""

from __future__ import annotations

import zlib

_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def pdf(objects: list[bytes]) -> bytes:
    """A PDF of ``objects`` (object 1 is the catalog), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _stream(data: bytes, compress: bool = False) -> bytes:
    if compress:
        data = zlib.compress(data, 9)
        return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def page_tree_bomb(levels: int = 5, fanout: int = 9, text: bytes = b"the same page again") -> bytes:
    """A few KB whose page tree reaches one page fanout**levels times (9**5 = 59,049)."""
    # 1 catalog, 2..levels+1 the /Pages nodes, then the page, its content and its font.
    page, content, font = levels + 2, levels + 3, levels + 4
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(levels):
        child = level + 3 if level + 1 < levels else page
        kids = b" ".join([b"%d 0 R" % child] * fanout)
        objects.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, fanout ** (levels - level)))
    objects.append(
        b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
        b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (levels + 1, content, font)
    )
    objects.append(_stream(b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text))
    objects.append(_FONT)
    return pdf(objects)


def inflating_pdf(content_bytes: int) -> bytes:
    """One page whose content stream inflates to ``content_bytes`` from a few hundred KB."""
    line = b"BT /F1 12 Tf 72 720 Td (inflate) Tj ET\n"
    content = line * (content_bytes // len(line) + 1)
    return pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream(content, compress=True),
            _FONT,
        ]
    )


def nested_html(depth: int) -> bytes:
    return b"<html><body>" + b"<div>" * depth + b"deep" + b"</div>" * depth + b"</body></html>"


def deep_page_tree(levels: int = 150) -> bytes:
    """A valid one-page PDF whose page tree is a chain of ``levels`` /Pages nodes (pypdf
    refuses more than 100 when it lists the pages): a bomb's tree with one kid a node."""
    return page_tree_bomb(levels, fanout=1, text=b"deep page")
