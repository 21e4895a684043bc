"""RAG prompt layout, grounding, RAFT passage choice and the task settings that turn it on."""

from __future__ import annotations

import pytest

from tests.knowledge.rag_helpers import keyword_retriever, product_chunks
from tuneloom.config import RagConfig, load_project
from tuneloom.errors import ProjectFileError
from tuneloom.knowledge.prompting import INSTRUCTION, clip, with_passages
from tuneloom.knowledge.raft import attach, find_grounding, in_prompt, support


def _row(i: int, question: str, answer: str) -> dict:
    return {
        "id": f"r{i}",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
    }


def test_passages_go_before_the_question_numbered_with_their_source():
    chunks = product_chunks()[:2]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is it waterproof?"}]
    out = with_passages(messages, chunks, max_chars=1000)
    assert out[0] == messages[0] and len(out) == 2
    text = out[1]["content"]
    assert text.startswith("Sources:\n[1] products.md > Products > Cam Outdoor\n")
    assert "\n\n[2] products.md > Products > Doorbell Pro\n" in text
    assert text.endswith(f"{INSTRUCTION}\nQuestion: Is it waterproof?")
    assert messages[1]["content"] == "Is it waterproof?"  # the caller's list is not changed
    assert with_passages(messages, [], 1000) == messages


def test_training_examples_keep_their_answer_after_the_rewritten_question():
    row = _row(0, "How much?", "Forty pounds.")
    out = with_passages(row["messages"], product_chunks()[:1], 1000)
    assert out[-1] == {"role": "assistant", "content": "Forty pounds."} and "Question: How much?" in out[1]["content"]


def test_a_conversation_without_a_user_turn_is_refused():
    with pytest.raises(ValueError, match="needs a user turn"):
        with_passages([{"role": "system", "content": "x"}], product_chunks()[:1], 1000)


def test_clip_cuts_at_a_word_and_leaves_short_text_alone():
    assert clip("short text", 100) == "short text"
    cut = clip("alpha beta gamma delta epsilon " * 10, 40)
    assert len(cut) <= 40 and cut.endswith("…") and not cut[:-1].endswith(" ")


def test_grounding_is_the_chunk_holding_most_of_the_answer():
    chunks = product_chunks()
    hits = keyword_retriever(chunks).retrieve("warranty two year", 6)
    answer = "The Thermostat has a two year warranty from the delivery date."
    grounding, share = find_grounding(answer, hits, 0.6)
    assert grounding is not None and grounding.chunk.section[-1] == "Thermostat" and share == 1.0
    assert find_grounding("Bananas are yellow.", hits, 0.6)[0] is None
    assert support("the a of", ["anything"]) == 0.0  # no content words: no support


def test_raft_context_mixes_grounding_distractors_and_absent_share_deterministically():
    chunks = product_chunks()
    retriever = keyword_retriever(chunks)
    rows = [
        _row(i, f"What is the warranty on the {p}?", f"The {p} has a two year warranty from the delivery date.")
        for i, p in enumerate(["Cam Outdoor", "Doorbell Pro", "Smart Plug", "Thermostat", "Home Hub", "Motion Sensor"] * 5)
    ]
    rag = RagConfig(top_k=3, absent_share=0.3)
    counts = attach(rows, retriever, rag, seed=1, raft=True)
    assert counts["rows"] == counts["grounded"] == 30
    assert all(len(r["knowledge"]["passages"]) == 3 for r in rows)
    absent = [r for r in rows if not r["knowledge"]["grounding_in_prompt"]]
    assert 0 < len(absent) < 20 and counts["grounding_in_prompt"] == 30 - len(absent)
    for r in absent:  # distractors only: never the grounding chunk
        assert r["knowledge"]["grounding"] not in [p["chunk"]["chunk_id"] for p in r["knowledge"]["passages"]]
    again = [dict(r, knowledge=None) for r in rows]
    attach(again, retriever, rag, seed=1, raft=True)
    assert [r["knowledge"] for r in again] == [r["knowledge"] for r in rows]  # recorded choices are reproducible
    prompted = in_prompt(rows, rag.passage_chars)
    assert prompted[0]["messages"][1]["content"].startswith("Sources:\n[1] ") and rows[0]["messages"][1]["content"].startswith(
        "What"
    )


def test_test_rows_get_the_questions_top_k_and_a_hit_flag():
    rows = [_row(0, "Is the Thermostat waterproof?", "The Thermostat is rated IP54, so it handles rain but not submersion.")]
    attach(rows, keyword_retriever(product_chunks()), RagConfig(top_k=2), seed=1, raft=False)
    record = rows[0]["knowledge"]
    assert record["hit"] is True and record["grounding_in_prompt"] is True
    assert [p["chunk"]["section"][-1] for p in record["passages"]][0] == "Thermostat" and len(record["passages"]) == 2


def test_knowledge_is_refused_for_task_types_that_do_not_retrieve(data_project_dir):
    with pytest.raises(ProjectFileError, match="classification tasks do not retrieve"):
        load_project(data_project_dir, ["ticket-triage:knowledge=handbook"])
    with pytest.raises(ProjectFileError, match="rag settings apply to tasks that name a knowledge base"):
        load_project(data_project_dir, ["helpdesk-qa:rag.top_k=5"])
    sets = ["helpdesk-qa:knowledge=handbok", "helpdesk-qa:rag.top_k=5"]
    with pytest.raises(ProjectFileError, match="no `knowledge:` section"):
        load_project(data_project_dir, sets)
    config = data_project_dir / "tuneloom.yaml"
    config.write_text(config.read_text() + "knowledge:\n  - name: handbook\n    sources: [{path: data/qa.jsonl}]\n")
    with pytest.raises(ProjectFileError, match=r"no knowledge base named 'handbok'; knowledge bases: \['handbook'\]"):
        load_project(data_project_dir, sets)
    task = load_project(data_project_dir, ["helpdesk-qa:knowledge=handbook", "helpdesk-qa:rag.top_k=5"]).config.task(
        "helpdesk-qa"
    )
    assert task.knowledge == "handbook" and task.rag.top_k == 5


def test_a_source_can_send_every_row_to_the_test_split(data_project_dir):
    from tests.conftest import write_jsonl
    from tuneloom.atomic import read_jsonl
    from tuneloom.data.prepare import prepare_dataset

    held = [{"question": f"Held-out question number {i}?", "answer": f"Held-out answer {i}."} for i in range(5)]
    write_jsonl(data_project_dir / "data" / "held.jsonl", held)
    config = data_project_dir / "tuneloom.yaml"
    text = config.read_text().replace(
        "        - path: data/qa.jsonl\n",
        "        - path: data/qa.jsonl\n        - path: data/held.jsonl\n          split: test\n",
        1,
    )
    config.write_text(text)
    ds = prepare_dataset(load_project(config), "helpdesk-qa")
    test = [r["messages"][-2]["content"] for r in read_jsonl(f"{ds.path}/test.jsonl")]
    train = [r["messages"][-2]["content"] for r in read_jsonl(f"{ds.path}/train.jsonl")]
    assert all(h["question"] in test for h in held) and not any("Held-out" in q for q in train)
    config.write_text(
        text.replace(
            "      columns: {prompt: question, response: answer}", "      columns: {prompt: question, response: answer, split: s}"
        )
    )
    with pytest.raises(ProjectFileError, match=r"data.sources\[1\].split and data.columns.split"):
        load_project(config)
