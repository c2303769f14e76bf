"""Each limit of ingestion.budget stops a file built to exceed it, quickly, with a message
that names the limit; ordinary files pass."""

from __future__ import annotations

import time

import pytest
from fpdf import FPDF

from ingestion.budget import Budget, OverBudget, html_depth
from ingestion.extract import extract
from ingestion.tests import hostile


def refused(data: bytes, name: str, budget: Budget | None = None) -> str:
    started = time.monotonic()
    with pytest.raises(OverBudget) as caught:
        extract(data, name, budget=budget)
    assert time.monotonic() - started < 5, "a limit must stop the work early, not after it"
    return caught.value.message


def text_pdf(pages: int, text: str = "Some words on a page. ") -> bytes:
    document = FPDF()
    document.set_font("helvetica", size=10)
    for _ in range(pages):
        document.add_page()
        document.multi_cell(0, 6, text * 10)
    return bytes(document.output())


def test_a_page_tree_that_revisits_a_page_is_refused_before_any_page_is_read():
    data = hostile.page_tree_bomb(levels=5, fanout=9)  # one page, reached 59,049 times
    assert len(data) < 5_000
    assert "page tree lists the same page" in refused(data, "tree.pdf")


def test_more_distinct_pages_than_allowed():
    assert "more than 3 pages" in refused(text_pdf(4), "long.pdf", Budget(max_pages=3))
    assert extract(text_pdf(3), "ok.pdf", budget=Budget(max_pages=3)).statistics()["pages"] == 3


def test_a_stream_that_inflates_past_the_limit():
    data = hostile.inflating_pdf(60 * 1024 * 1024)
    assert len(data) < 400_000
    assert "decompresses to more than 32 MB" in refused(data, "inflate.pdf")


def test_the_pages_together_past_the_document_limit():
    data = text_pdf(5)
    assert "more than 0 MB together" in refused(data, "doc.pdf", Budget(max_document_bytes=1000))


def test_more_text_than_the_file_size_can_honestly_give():
    data = text_pdf(3, "x" * 80 + " ")
    message = refused(data, "many.pdf", Budget(text_floor=100, text_per_byte=1))
    assert "per byte of the file" in message


def test_a_page_tree_nested_deeper_than_pypdf_reads_is_refused_not_retried():
    data = hostile.deep_page_tree(levels=150)
    assert len(data) < 15_000
    assert "Maximum page tree depth" in refused(data, "deep.pdf")
    assert extract(hostile.deep_page_tree(levels=20), "ok.pdf").text == "deep page"


@pytest.mark.parametrize(
    "name, data",
    [
        # Each row repeats the header's one 50,000-character name: 52 KB gave 50 M characters.
        ("names.csv", ("h" * 50_000 + "\n" + "a\n" * 1000).encode()),
        # Each line indented by its depth: 42 KB, 900 deep, gave 37 M characters.
        ("deep.json", ("[" * 900 + "0," * 20_000 + "0" + "]" * 900).encode()),
    ],
)
def test_a_table_or_tree_that_renders_far_more_text_than_its_size_is_refused(name, data):
    assert "per byte of the file" in refused(data, name)


def test_a_big_file_is_held_to_the_most_text_one_file_may_give():
    """The per-byte limit lets a 50 MB file give 5 G characters: gigabytes of memory."""
    data = ("column" + "\n" + "a\n" * 200_000).encode()  # 400 KB: 2 M characters rendered
    message = refused(data, "wide.csv", Budget(max_text=1_000_000))
    assert "more than 1,000,000 characters of text, the most one file may" in message
    assert extract(data, "wide.csv").text.count("column: a") == 200_000


def test_html_nested_past_the_limit_is_refused_and_measured_linearly():
    data = hostile.nested_html(100_000)
    assert "nests elements more than 2,000 deep" in refused(data, "deep.html")
    assert html_depth("<div><p>a<br><img src=x><b>b</b></p><script>'<div><div>'</script></div>") == 3
    assert html_depth("<div></b>" * 3000) == 3000, "a stray closing tag closes nothing"
    assert html_depth("<ul><li><b>x</li><li>y</li></ul>" * 50) == 3, "a closing tag closes what was opened inside"
    assert extract(hostile.nested_html(500), "fine.html").text == "deep"


def test_reading_past_the_time_limit_stops_between_pages():
    assert "longer than the 0 s allowed" in refused(text_pdf(2), "slow.pdf", Budget(max_seconds=0))
