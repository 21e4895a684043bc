"""Structure-following chunking measured with the packaged MiniLM tokenizer."""

from __future__ import annotations

import pytest

from tuneloom.knowledge.chunking import blocks, chunk_text


class Counter:
    """The MiniLM tokenizer as a `TokenCounter` (what the embedder passes in)."""

    def __init__(self, folder):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(folder)

    def count(self, texts):
        return [len(i) for i in self.tok(texts, add_special_tokens=False)["input_ids"]] if texts else []

    def offsets(self, text):
        return self.tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


@pytest.fixture(scope="module")
def counter(minilm_dir):
    return Counter(minilm_dir)


DOC = """# Returns

## Policy
Items can be returned within 30 days of delivery.

## Exceptions
Opened software cannot be returned.

| Item | Window |
|------|--------|
| Gift cards | none |

# Shipping
Parcels leave the warehouse within two days.
"""


def test_blocks_follow_headings_and_keep_tables_whole():
    found = [(b.section, b.text) for b in blocks(DOC)]
    assert (("Returns", "Policy"), "Items can be returned within 30 days of delivery.") in found
    assert (("Returns", "Exceptions"), "| Item | Window |\n|------|--------|\n| Gift cards | none |") in found
    assert (("Shipping",), "# Shipping") in found  # a top-level heading resets the path


def test_sections_start_chunks_and_headings_join_their_section(counter):
    pieces = chunk_text(DOC, counter, 200, 16)
    assert [p.section for p in pieces] == [("Returns", "Policy"), ("Returns", "Exceptions"), ("Shipping",)]
    assert pieces[0].text.startswith("# Returns\n\n## Policy\n\nItems")
    assert "| Gift cards | none |" in pieces[1].text
    assert all(p.tokens == counter.count([p.text])[0] for p in pieces)


def test_budget_and_overlap(counter):
    text = "# Long\n" + " ".join(f"Sentence number {i} says something new." for i in range(120))
    pieces = chunk_text(text, counter, 64, 12)
    assert len(pieces) > 5
    assert all(p.tokens <= 64 for p in pieces)
    for before, after in zip(pieces, pieces[1:], strict=False):
        head = after.text[:20]
        assert head in before.text[-80:], (before.text[-80:], head)  # the next chunk repeats the previous one's end
    assert "Sentence number 0 " in pieces[0].text and "Sentence number 119 " in pieces[-1].text


def test_a_sentence_longer_than_the_budget_is_cut_at_token_boundaries(counter):
    text = " ".join(f"word{i}" for i in range(400))  # one paragraph, no sentence end
    pieces = chunk_text(text, counter, 50, 0)
    assert all(p.tokens <= 50 for p in pieces)
    assert " ".join(p.text for p in pieces).split() == text.split()


def test_empty_text_has_no_chunks(counter):
    assert chunk_text("", counter, 64, 8) == []
