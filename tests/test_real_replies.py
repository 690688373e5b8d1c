"""Whole runs against replies shaped the way real servers and models send them (see
tests/data/reply_shapes.json), and against numbers no server should send: every chapter must
come through, the folder must stay usable."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from imaginize.reading.epub import read_book
from tests.fake_openai import FakeOpenAI
from tests.replies import paraphrasing, reply_json
from tests.test_cli import SAMPLE
from tests.test_cli import imaginize as run

SHAPES = json.loads((Path(__file__).parent / "data" / "reply_shapes.json").read_text())["shapes"]


def renamed(answer: dict[str, Any]) -> dict[str, Any]:
    """Field names and value shapes as instruction-tuned models vary them."""
    scenes = [
        {
            "Quote": {"text": s["quote"]},
            "description": s["description"],
            "characters": ", ".join(s["characters"]),
            "lighting": None,
            "image_prompt": s["imagePrompt"],
        }
        for s in answer["scenes"]
    ]
    elements = [
        {"name": e["name"], "type": "Characters", "aliases": e["aliases"], "quotes": e["quotes"]}
        for e in answer["elements"]
    ]
    elements.append({"name": "the lamp"})  # no kind: dropped, not the chapter
    return {"Scenes": scenes, "elements": elements}


def grouped(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "scenes": answer["scenes"],
        "characters": [{k: v for k, v in e.items() if k != "kind"} for e in answer["elements"]],
        "places": ["the orchard"],
    }


def shaped(name: str) -> Any:
    shape = SHAPES[name]
    change = {"canonical": lambda a: a, "renamed": renamed, "grouped": grouped}[shape["answer"]]

    def respond(body: Mapping[str, Any] | None) -> dict[str, Any]:
        answer = json.dumps(change(json.loads(reply_json(body))))
        return {"kind": "reply", "content": shape["wrap"].replace("{answer}", answer)}

    return respond


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.slow
def test_every_chapter_comes_through_a_real_reply_shape(
    fake_openai: FakeOpenAI, tmp_path: Path, name: str
) -> None:
    fake_openai.script(responder=shaped(name))
    out = tmp_path / "out"
    result = run(SAMPLE, "-o", out, "--base-url", fake_openai.url, "--chapters", "1-3")
    assert result.returncode == 0, result.stdout + result.stderr
    for number in (1, 2, 3):
        data = json.loads((out / "chapters" / f"{number:03d}.json").read_text())
        assert data["scenes"], name
        assert data["elements"], name
    requests = [r for r in fake_openai.requests if r["endpoint"] == "chat"]
    assert len(requests) == 3  # no repair request was needed


@pytest.mark.slow
def test_untrustworthy_usage_never_makes_the_folder_unusable(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # Negative and fractional counts were written to the manifest, whose own parser then
    # refused it: every later run and `status` failed on the folder.
    def respond(body: Mapping[str, Any] | None) -> dict[str, Any]:
        usage = {"prompt_tokens": -40, "completion_tokens": 12.5}
        return {"kind": "reply", "content": reply_json(body), "usage": usage}

    fake_openai.script(responder=respond)
    out = tmp_path / "out"
    first = run(SAMPLE, "-o", out, "--base-url", fake_openai.url, "--chapters", "1-2")
    assert first.returncode == 0, first.stderr
    assert "invalid token usage" in first.stdout + first.stderr
    status = run("status", SAMPLE, "-o", out, "--json")
    assert status.returncode == 0, status.stderr
    again = run(SAMPLE, "-o", out, "--base-url", fake_openai.url, "--chapters", "1-3")
    assert again.returncode == 0, again.stderr
    for number in (1, 2, 3):
        data = json.loads((out / "chapters" / f"{number:03d}.json").read_text())
        assert data["usage"]["promptTokens"] >= 0
        assert isinstance(data["usage"]["completionTokens"], int)


@pytest.mark.slow
def test_a_paraphrasing_model_keeps_its_scenes_in_the_books_words(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(responder=paraphrasing)
    out = tmp_path / "out"
    result = run(SAMPLE, "-o", out, "--base-url", fake_openai.url, "--chapters", "1-2")
    assert result.returncode == 0, result.stdout + result.stderr
    book = read_book(SAMPLE)
    for number in (1, 2):
        data = json.loads((out / "chapters" / f"{number:03d}.json").read_text())
        assert data["scenes"] and data["correctedQuotes"] == len(data["scenes"])
        text = " ".join(book.chapters[number - 1].text.split())
        for scene in data["scenes"]:
            assert " ".join(scene["quote"].split()) in text  # the book's words, not the model's
    contents = (out / "Contents.md").read_text()
    assert "Quotes corrected to the book's own words:" in contents


@pytest.mark.slow
def test_tokens_of_failed_attempts_are_counted_and_costed(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # The summary and Contents.md said "0 tokens" after thousands were spent on failures.
    usage = {"prompt_tokens": 100, "completion_tokens": 50}
    fake_openai.script(default={"kind": "reply", "content": "I cannot help.", "usage": usage})
    out = tmp_path / "out"
    result = run(SAMPLE, "-o", out, "--base-url", fake_openai.url, "--chapters", "1",
                 "--max-attempts", "2", "--batch-delay", "0")  # fmt: skip
    assert result.returncode == 1, result.stderr
    sent = len([r for r in fake_openai.requests if r["endpoint"] == "chat"])
    assert sent == 3  # the request, its repair, one fresh try; an unusable reply is final
    spent = sent * 150
    assert any(f"{spent:,} tokens" in line for line in result.stderr.splitlines())
    contents = (out / "Contents.md").read_text()
    assert f"- Tokens used: {spent:,} (300 prompt, 150 completion, {spent:,} of them" in contents
    assert "- Estimated cost: $" in contents
