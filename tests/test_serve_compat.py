"""``serve`` as a drop-in for the server the original localcode tool talked to.

The original tool posted raw JSON to llama-server on port 1235 with its config's model name
(``glm-4.7-flash-q6k`` and the like), its sampling fields, ``tools``, ``stream``, the
conversation with earlier tool calls and results, ``chat_template_kwargs``, and its request
overrides (``cache``, ``think``, ``return_thinking``, ``reasoning_effort``,
``max_batch_tool_calls``) that llama-server ignores. This test sends exactly that shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from serve_util import running_server

from localcode.backends.scripted import ScriptedChatModel
from localcode.server import create_app

TOOLS = [
    {"type": "function", "function": {
        "name": "read_file", "description": "Read a file.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "write_file", "description": "Write a file.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                       "required": ["path", "content"]}}},
]


def original_request(stream: bool) -> dict[str, Any]:
    """One request body as the original tool built it (config glm-4.7-flash q6k, second turn)."""
    return {
        "model": "glm-4.7-flash-q6k",
        "messages": [
            {"role": "system", "content": "You are a coding agent. Tools: read_file, write_file."},
            {"role": "user", "content": "Fix bowling.py so the tests pass."},
            {"role": "assistant", "content": "", "reasoning_content": "Read the file first.",
             "tool_calls": [{"id": "call_0", "type": "function",
                             "function": {"name": "read_file", "arguments": "{\"path\": \"bowling.py\"}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "name": "read_file", "content": "class BowlingGame:\n    pass\n"},
        ],
        "temperature": 0.7,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": 0.01,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "max_tokens": 16000,
        "tools": TOOLS,
        "tool_choice": "auto",
        "stream": stream,
        "chat_template_kwargs": {"enable_thinking": False},
        "cache": True,
        "think": False,
        "return_thinking": True,
        "reasoning_effort": "medium",
        "max_batch_tool_calls": 5,
    }


@pytest.fixture
def scripted() -> ScriptedChatModel:
    return ScriptedChatModel(name="gemma-3-270m")


@pytest.fixture
def http(scripted: ScriptedChatModel) -> Iterator[httpx.Client]:
    with running_server(create_app(scripted, "gguf/gemma-3-270m")) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client


WRITE = {"name": "write_file", "arguments": {"path": "bowling.py", "content": "class BowlingGame: ..."}, "id": "call_1"}


def _check_request_reached_the_model(scripted: ScriptedChatModel) -> None:
    req = scripted.requests[-1]
    opts = req["options"]
    assert (opts.temperature, opts.top_p, opts.top_k, opts.min_p, opts.max_tokens) == (0.7, 1.0, 0, 0.01, 16000)
    assert opts.think is False and opts.think_level == "medium" and opts.tool_choice == "auto"
    assert [t["function"]["name"] for t in req["tools"]] == ["read_file", "write_file"]
    history = req["messages"]
    assert [m["role"] for m in history] == ["system", "user", "assistant", "tool"]
    assert history[2]["tool_calls"][0]["function"] == {"name": "read_file", "arguments": "{\"path\": \"bowling.py\"}"}
    assert history[2]["reasoning_content"] == "Read the file first."
    assert history[3]["tool_call_id"] == "call_0" and history[3]["content"].startswith("class BowlingGame")


def test_original_request_non_streamed(scripted: ScriptedChatModel, http: httpx.Client) -> None:
    scripted.add({"content": "", "reasoning": "Now write it.", "tool_calls": [WRITE]})
    r = http.post("/v1/chat/completions", json=original_request(stream=False))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "gguf/gemma-3-270m", "the response names the loaded model"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "call_1" and call["function"]["name"] == "write_file"
    assert json.loads(call["function"]["arguments"]) == WRITE["arguments"]
    assert choice["message"]["reasoning_content"] == "Now write it."
    assert body["usage"]["prompt_tokens"] > 0 and "timings" in body  # what the original tool printed
    _check_request_reached_the_model(scripted)


def test_original_request_streamed(scripted: ScriptedChatModel, http: httpx.Client) -> None:
    scripted.add({"content": "Done.", "tool_calls": [WRITE]})
    with http.stream("POST", "/v1/chat/completions", json=original_request(stream=True)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["model"] for c in chunks} == {"gguf/gemma-3-270m"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Done."
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["function"]["name"] == "write_file" and calls[0]["id"] == "call_1"
    args = "".join(tc["function"].get("arguments") or "" for tc in calls)
    assert json.loads(args) == WRITE["arguments"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] \
        == ["tool_calls"]
    _check_request_reached_the_model(scripted)


def test_strict_model_refuses_the_original_name(scripted: ScriptedChatModel) -> None:
    with running_server(create_app(scripted, "gguf/gemma-3-270m", strict_model=True)) as base:
        r = httpx.post(base + "/v1/chat/completions", json=original_request(stream=False), timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert scripted.requests == []
