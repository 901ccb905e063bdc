"""``serve``'s ``/openapi.json`` documents the real API, and a schemathesis run against it finds
no 5xx and no answer that breaks the documented schemas.

The fuzz runs over a real uvicorn server with a model that answers every request (content,
a tool call, reasoning), so every route is reached; examples are bounded so the run stays
well under a minute on a CI machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from serve_util import running_server

from localcode.backends.base import ChatOptions, ChatResult, Message, ModelInfo, StreamEvent, ToolCall, ToolSchema, Usage
from localcode.server import create_app

EXAMPLES = 30
"""Examples per operation and mode (4 operations x 2 modes): seconds, not minutes."""


class AnsweringModel:
    """Answers anything, chat or raw text: a reply with reasoning and, when tools are offered, a call."""

    info = ModelInfo(backend="fake", model="fuzz", context_window=4096)

    def _result(self, tools: list[ToolSchema] | None) -> ChatResult:
        calls = []
        if tools:
            calls = [ToolCall(name=tools[0]["function"]["name"], arguments="{}")]
        return ChatResult(content="fine", reasoning="hm", tool_calls=calls,
                          finish_reason="tool_calls" if calls else "stop",
                          usage=Usage(prompt_tokens=3, completion_tokens=2))

    def chat(self, messages: list[Message], tools: list[ToolSchema] | None = None,
             options: ChatOptions | None = None) -> ChatResult:
        return self._result(tools)

    def stream(self, messages: list[Message], tools: list[ToolSchema] | None = None,
               options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        result = self._result(tools)
        yield StreamEvent(kind="reasoning", text=result.reasoning)
        yield StreamEvent(kind="content", text=result.content)
        yield StreamEvent(kind="done", result=result)

    def stream_text(self, prompt: str, options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        result = ChatResult(content=" and so on", usage=Usage(prompt_tokens=3, completion_tokens=3))
        yield StreamEvent(kind="content", text=result.content)
        yield StreamEvent(kind="done", result=result)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_server(create_app(AnsweringModel(), "fuzz", aliases=["gguf/fuzz"])) as url:  # type: ignore[arg-type]
        yield url


def test_openapi_documents_request_and_response_bodies(base_url: str) -> None:
    spec = httpx.get(base_url + "/openapi.json").json()
    assert set(spec["paths"]) == {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health"}
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    ref = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"model", "messages", "tools", "tool_choice", "stream", "chat_template_kwargs", "max_tokens"} <= set(request["properties"])
    assert request["required"] == ["messages"]
    ok = chat["responses"]["200"]["content"]
    assert ok["application/json"]["schema"]["$ref"].endswith("/ChatCompletion") and "text/event-stream" in ok
    assert chat["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    # What the documented schema promises is what the official client reads back.
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=20)
    assert client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content == "fine"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_no_server_error_and_answers_match_the_schema(base_url: str, mode: GenerationMode) -> None:
    """Every documented operation, bodies valid (positive) and invalid (negative) per the schema."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 4
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # nothing to make invalid: the GET routes take no input

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case: Any) -> None:
            case.call_and_validate(base_url=base_url, checks=[not_a_server_error, response_schema_conformance,
                                                              status_code_conformance, content_type_conformance])

        check()
