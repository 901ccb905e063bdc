"""The OpenAI wire format of ``localcode serve``: request models, their translation into
``ChatOptions``, and responses built from the ``openai`` package's own types.

Kept apart from the app (``localcode.server``) so the format can be read and tested on its
own. Requests are validated by pydantic; a ``ValidationError`` or a ``RequestError`` becomes
an OpenAI-shaped 4xx answer in the app. Unknown request fields are ignored (as llama-server
does), so clients that send ``user``, ``store``, ``metadata`` and friends keep working;
fields that would change the answer but are not supported (``n > 1``, ``logprobs``,
``response_format`` other than text, images) are refused with 400 rather than ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from openai.types import Completion, CompletionChoice, CompletionUsage, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import (
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
    Function,
)
from openai.types.completion_usage import PromptTokensDetails
from pydantic import BaseModel, ConfigDict, Field

from localcode.backends.base import ChatOptions, ChatResult, Message, ModelInfo, StreamEvent, ToolSchema


class RequestError(Exception):
    """A client mistake the pydantic models cannot express; answered with ``status``."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | int | None = None) -> dict[str, Any]:
    """OpenAI's error envelope: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Lenient(BaseModel):
    # Unknown fields are ignored: OpenAI clients send many that do not concern a local model.
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    """One part of a multi-part message content; only text parts are supported."""

    type: str
    text: str | None = None


class RequestFunctionCall(_Lenient):
    """The function of an assistant's tool call in the history."""

    name: str
    arguments: str | dict[str, Any] = "{}"
    """JSON text as OpenAI sends it; an object is accepted and serialised."""


class RequestToolCall(_Lenient):
    """An assistant's earlier tool call, as sent back in the history."""

    id: str | None = None
    type: Literal["function"] = "function"
    function: RequestFunctionCall


class RequestMessage(_Lenient):
    """One chat message of a request."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    """Text, or a list of text parts (joined); images are refused."""
    name: str | None = None
    tool_calls: list[RequestToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    """The assistant's earlier reasoning (llama-server's field), kept for templates that show it."""

    def to_message(self, index: int) -> Message:
        """The plain dict a ``ChatModel`` takes."""
        role = "system" if self.role == "developer" else self.role
        msg: Message = {"role": role, "content": _text_of(self.content, index)}
        if self.name is not None:
            msg["name"] = self.name
        if self.tool_call_id is not None:
            msg["tool_call_id"] = self.tool_call_id
        if self.reasoning_content:
            msg["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": c.id or f"call_{index}_{i}",
                    "type": "function",
                    "function": {
                        "name": c.function.name,
                        "arguments": c.function.arguments if isinstance(c.function.arguments, str)
                        else json.dumps(c.function.arguments),
                    },
                }
                for i, c in enumerate(self.tool_calls)
            ]
        return msg


def _text_of(content: str | list[ContentPart] | None, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise RequestError(f"content part of type '{part.type}' is not supported: send text parts only",
                               param=f"messages.{index}.content.{j}")
        texts.append(part.text)
    return "".join(texts)


class FunctionDef(_Lenient):
    """A tool's function: name, description and JSON-schema parameters."""

    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Lenient):
    """One tool a request offers the model."""

    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Lenient):
    """The function of a named ``tool_choice``."""

    name: str


class NamedToolChoice(_Lenient):
    """``{"type": "function", "function": {"name": ...}}``: the model must call this tool."""

    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Lenient):
    """``stream_options`` of a streamed request."""

    include_usage: bool = False
    """Send a last chunk with empty ``choices`` and the ``usage``."""


class ResponseFormat(_Lenient):
    """``response_format``; only ``text`` is supported."""

    type: str


class _Sampling(_Lenient):
    model: str | None = None
    """The model to use; missing or empty means the loaded model."""
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    repeat_penalty: float | None = Field(default=None, ge=0)
    """llama-server's repetition penalty."""
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1)
    ignore_eos: bool = False
    """llama-server extra: keep generating past the end-of-generation token."""

    def _options(self, max_tokens: int | None) -> ChatOptions:
        if self.n != 1:
            raise RequestError("n > 1 is not supported: ask once per completion", param="n")
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        extra: dict[str, Any] = {}
        if self.ignore_eos:
            extra["ignore_eos"] = True
        return ChatOptions(
            temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, min_p=self.min_p,
            presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
            repeat_penalty=self.repeat_penalty, max_tokens=max_tokens, seed=self.seed, stop=stop, extra=extra,
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    """The body of ``POST /v1/chat/completions``."""

    messages: list[RequestMessage] = Field(min_length=1)
    tools: list[ToolDef] | None = None
    tool_choice: Literal["auto", "required", "none"] | NamedToolChoice | None = None
    """Default ``auto`` (with tools) as in OpenAI's API."""
    max_completion_tokens: int | None = Field(default=None, ge=1)
    """OpenAI's newer name for ``max_tokens``; wins when both are set."""
    chat_template_kwargs: dict[str, Any] | None = None
    """llama-server extra: ``enable_thinking`` switches thinking; ``reasoning_effort`` sets its level."""
    reasoning_effort: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    parallel_tool_calls: bool | None = None

    def to_call(self) -> tuple[list[Message], list[ToolSchema] | None, ChatOptions]:
        """Messages, tools and options for ``ChatModel.stream``. Raises ``RequestError``."""
        if self.logprobs or self.top_logprobs:
            raise RequestError("logprobs are not supported by localcode serve", param="logprobs")
        if self.response_format is not None and self.response_format.type != "text":
            raise RequestError(f"response_format '{self.response_format.type}' is not supported: "
                               "use tools with tool_choice to get structured output", param="response_format")
        messages = [m.to_message(i) for i, m in enumerate(self.messages)]
        tools = [t.model_dump(exclude_none=True) for t in self.tools] if self.tools else None
        options = self._options(self.max_completion_tokens or self.max_tokens)
        choice = self.tool_choice or "auto"
        if isinstance(choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or []}
            if choice.function.name not in names:
                raise RequestError(f"tool_choice names '{choice.function.name}', which is not among the tools",
                                   param="tool_choice")
            options.tool_choice = choice.model_dump()
        else:
            if choice == "required" and not tools:
                raise RequestError("tool_choice 'required' needs at least one tool", param="tool_choice")
            options.tool_choice = choice
        kwargs = dict(self.chat_template_kwargs or {})
        if "enable_thinking" in kwargs:
            options.think = bool(kwargs.pop("enable_thinking"))
        level = kwargs.pop("reasoning_effort", None) or self.reasoning_effort
        if level is not None:
            options.think_level = str(level)
        if kwargs:
            options.extra["chat_template_kwargs"] = kwargs
        return messages, tools, options


class CompletionRequest(_Sampling):
    """The body of ``POST /v1/completions``: raw prompt text in, text out (no chat template)."""

    prompt: str | list[str]
    """One prompt; a list of one string is accepted. Token arrays are not."""
    max_tokens: int | None = Field(default=16, ge=1)
    """OpenAI's default for completions is 16 tokens."""
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = None

    def to_call(self) -> tuple[str, ChatOptions]:
        """The prompt and options for a raw completion. Raises ``RequestError``."""
        if self.echo or self.suffix or self.logprobs:
            field = "echo" if self.echo else "suffix" if self.suffix else "logprobs"
            raise RequestError(f"{field} is not supported by localcode serve", param=field)
        prompt = self.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise RequestError("send exactly one prompt per request", param="prompt")
            prompt = prompt[0]
        return prompt, self._options(self.max_tokens)


# ---- responses ------------------------------------------------------------------------------------

def finish_reason(result: ChatResult) -> Literal["stop", "length", "tool_calls"]:
    """OpenAI's finish reason; a cancelled generation (nobody is listening) reads as ``stop``, one
    stopped by the repetition guard as ``length``."""
    return {"cancelled": "stop", "repetition": "length"}.get(result.finish_reason, result.finish_reason)  # type: ignore[return-value]


def usage_of(result: ChatResult) -> CompletionUsage:
    """``usage`` with ``prompt_tokens_details.cached_tokens``."""
    u = result.usage
    return CompletionUsage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                           total_tokens=u.total_tokens,
                           prompt_tokens_details=PromptTokensDetails(cached_tokens=u.cached_tokens))


def visible_content(result: ChatResult) -> str:
    """The content, plus the raw text of tool calls that could not be parsed (never dropped)."""
    content = result.content
    for bad in result.malformed_tool_calls:
        if bad.raw and bad.raw not in content:
            content += bad.raw
    return content


def chat_completion(result: ChatResult, model: str, completion_id: str, created: int) -> ChatCompletion:
    """A ``chat.completion`` with ``reasoning_content`` and llama-server's ``timings``."""
    calls = [ChatCompletionMessageFunctionToolCall(id=c.id, type="function",
                                                   function=Function(name=c.name, arguments=c.arguments))
             for c in result.tool_calls]
    message_fields: dict[str, Any] = {}
    if result.reasoning:
        message_fields["reasoning_content"] = result.reasoning
    message = ChatCompletionMessage(role="assistant", content=visible_content(result) or None,
                                    tool_calls=calls or None, **message_fields)
    return ChatCompletion(id=completion_id, object="chat.completion", created=created, model=model,
                          choices=[Choice(index=0, message=message, finish_reason=finish_reason(result),
                                          logprobs=None)],
                          usage=usage_of(result), timings=result.timings.to_llama_server())


class ChunkWriter:
    """Turns ``StreamEvent``s into serialised ``chat.completion.chunk``s for one stream.

    Whatever the backend streamed is compared with the final result, so text or tool calls
    that only appear in the final result (or malformed calls' raw text) still reach the client.
    """

    def __init__(self, model: str, completion_id: str, created: int, include_usage: bool) -> None:
        self.model = model
        self.id = completion_id
        self.created = created
        self.include_usage = include_usage
        self.content = ""
        self.reasoning = ""
        self.call_indices: set[int] = set()

    def _chunk(self, delta: ChoiceDelta | None, finish: str | None = None, **extra: Any) -> str:
        choices = [] if delta is None else [ChunkChoice(index=0, delta=delta, finish_reason=finish, logprobs=None)]
        chunk = ChatCompletionChunk(id=self.id, object="chat.completion.chunk", created=self.created,
                                    model=self.model, choices=choices, **extra)
        return chunk.model_dump_json(exclude_unset=True)

    def first(self) -> str:
        """The opening chunk: the assistant role and empty content, as OpenAI sends it."""
        return self._chunk(ChoiceDelta(role="assistant", content=""))

    def event(self, ev: StreamEvent) -> list[str]:
        """The chunks for one event (none for empty deltas); ``done`` closes the stream."""
        if ev.kind == "content":
            if not ev.text:
                return []
            self.content += ev.text
            return [self._chunk(ChoiceDelta(content=ev.text))]
        if ev.kind == "reasoning":
            if not ev.text:
                return []
            self.reasoning += ev.text
            return [self._chunk(ChoiceDelta(reasoning_content=ev.text))]
        if ev.kind == "tool_call":
            self.call_indices.add(ev.index)
            return [self._chunk(ChoiceDelta(tool_calls=[self._call_delta(ev.index, ev.id, ev.name, ev.arguments)]))]
        assert ev.result is not None, "a done event carries the result"
        return self.done(ev.result)

    @staticmethod
    def _call_delta(index: int, call_id: str | None, name: str | None, arguments: str) -> ChoiceDeltaToolCall:
        fields: dict[str, Any] = {"index": index}
        if call_id is not None:
            fields["id"] = call_id
            fields["type"] = "function"
        fn: dict[str, Any] = {"arguments": arguments}
        if name is not None:
            fn["name"] = name
        fields["function"] = ChoiceDeltaToolCallFunction(**fn)
        return ChoiceDeltaToolCall(**fields)

    def done(self, result: ChatResult) -> list[str]:
        """Catch-up deltas, the finish chunk, the usage chunk; ``timings`` ride on the last one."""
        out = []
        if result.reasoning.startswith(self.reasoning) and len(result.reasoning) > len(self.reasoning):
            out.append(self._chunk(ChoiceDelta(reasoning_content=result.reasoning[len(self.reasoning):])))
        content = visible_content(result)
        if content.startswith(self.content) and len(content) > len(self.content):
            out.append(self._chunk(ChoiceDelta(content=content[len(self.content):])))
        for i, call in enumerate(result.tool_calls):
            if i not in self.call_indices:
                out.append(self._chunk(ChoiceDelta(tool_calls=[self._call_delta(i, call.id, call.name, call.arguments)])))
        timings = {"timings": result.timings.to_llama_server()}
        if self.include_usage:
            out.append(self._chunk(ChoiceDelta(), finish=finish_reason(result)))
            out.append(self._chunk(None, usage=usage_of(result), **timings))
        else:
            out.append(self._chunk(ChoiceDelta(), finish=finish_reason(result), **timings))
        return out


def text_completion(result: ChatResult, model: str, completion_id: str, created: int) -> Completion:
    """A ``text_completion`` answer of ``/v1/completions``."""
    return Completion(id=completion_id, object="text_completion", created=created, model=model,
                      choices=[CompletionChoice(index=0, text=result.content, logprobs=None,
                                                finish_reason="stop" if result.finish_reason == "tool_calls"
                                                else finish_reason(result))],
                      usage=usage_of(result), timings=result.timings.to_llama_server())


def text_completion_chunk(text: str, model: str, completion_id: str, created: int,
                          result: ChatResult | None = None, include_usage: bool = False) -> str:
    """One streamed ``text_completion`` piece; with ``result``, the last one (finish reason, usage)."""
    fields: dict[str, Any] = {}
    finish: str | None = None
    if result is not None:
        finish = "stop" if result.finish_reason == "tool_calls" else finish_reason(result)
        fields["timings"] = result.timings.to_llama_server()
        if include_usage:
            fields["usage"] = usage_of(result)
    # construct, not validate: OpenAI's type has no null finish_reason, but streamed pieces carry one
    choice = CompletionChoice.model_construct(index=0, text=text, logprobs=None, finish_reason=finish)
    return Completion(id=completion_id, object="text_completion", created=created, model=model,
                      choices=[choice], **fields).model_dump_json(exclude_unset=True)


def models_list(names: list[str], info: ModelInfo | None, created: int) -> dict[str, Any]:
    """``GET /v1/models``: the loaded model (its first name), with what was loaded under ``meta``."""
    model = Model(id=names[0], object="model", created=created, owned_by="localcode")
    data = model.model_dump(exclude_none=True)
    data["aliases"] = names[1:]
    if info is not None:
        data["meta"] = info.model_dump(exclude={"details"}, exclude_none=True)
    return {"object": "list", "data": [data]}


def new_id(prefix: str) -> tuple[str, int]:
    """A fresh response id and its ``created`` time."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}", int(time.time())


# ---- OpenAPI ----------------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    """The ``error`` object of an error answer."""

    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: ``{"error": {...}}``."""

    error: ErrorDetail


class ModelList(BaseModel):
    """``GET /v1/models``: the loaded model (with ``aliases`` and ``meta`` beside OpenAI's fields)."""

    object: Literal["list"]
    data: list[Model]


class Health(BaseModel):
    """``GET /health``: ``ok`` once the model is loaded; ``loading model`` (503) or ``error`` (500) with ``error``."""

    status: str
    error: ErrorDetail | None = None


_ERRORS = {
    "400": "A client mistake: bad JSON, a wrong type or value, an unsupported field, a prompt too long "
           "for the context (code context_length_exceeded).",
    "401": "Missing or wrong API key (serve --api-key).",
    "404": "Another model was named and serve runs with --strict-model (code model_not_found).",
    "413": "The request body is too large.",
    "500": "The model failed.",
    "503": "The model is still loading, or the queue is full (Retry-After).",
}


def document(spec: dict[str, Any]) -> dict[str, Any]:
    """Fill FastAPI's OpenAPI ``spec`` with the request and response bodies of the routes.

    The routes read their bodies themselves (to answer in OpenAI's error format), so FastAPI
    cannot see them; here they are declared from the same models the routes validate with
    (requests) and answer with (the ``openai`` package's response types).
    """
    from pydantic.json_schema import models_json_schema

    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (ChatCompletionRequest, "validation"), (CompletionRequest, "validation"), (ChatCompletion, "serialization"),
        (Completion, "serialization"), (ModelList, "serialization"), (Health, "serialization"),
        (ErrorResponse, "serialization"),
    ]
    refs, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    spec.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))

    def ref(model: type[BaseModel], mode: str = "serialization") -> dict[str, Any]:
        return refs[(model, mode)]  # type: ignore[index]

    def errors(*codes: str) -> dict[str, Any]:
        return {c: {"description": _ERRORS[c], "content": {"application/json": {"schema": ref(ErrorResponse)}}}
                for c in codes}

    def body(model: type[BaseModel]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": ref(model, "validation")}}}

    def answer(model: type[BaseModel], what: str) -> dict[str, Any]:
        return {"description": what, "content": {
            "application/json": {"schema": ref(model)},
            "text/event-stream": {"schema": {"type": "string"},
                                  "description": "With stream: true, server-sent events 'data: {chunk}' ... 'data: [DONE]'."},
        }}

    paths = spec.setdefault("paths", {})
    chat = paths.get("/v1/chat/completions", {}).get("post")
    if chat is not None:
        chat["requestBody"] = body(ChatCompletionRequest)
        chat["responses"] = {"200": answer(ChatCompletion, "The completion (chat.completion, or chunks when streamed)."),
                             **errors("400", "401", "404", "413", "500", "503")}
    text = paths.get("/v1/completions", {}).get("post")
    if text is not None:
        text["requestBody"] = body(CompletionRequest)
        text["responses"] = {"200": answer(Completion, "The completion (text_completion, or pieces when streamed)."),
                             **errors("400", "401", "404", "413", "500", "503"),
                             "501": {"description": "The backend cannot complete raw text (use chat completions).",
                                     "content": {"application/json": {"schema": ref(ErrorResponse)}}}}
    models_op = paths.get("/v1/models", {}).get("get")
    if models_op is not None:
        models_op["responses"] = {"200": {"description": "The served model.",
                                          "content": {"application/json": {"schema": ref(ModelList)}}},
                                  **errors("401")}
    health = paths.get("/health", {}).get("get")
    if health is not None:
        health["responses"] = {code: {"description": what, "content": {"application/json": {"schema": ref(Health)}}}
                               for code, what in (("200", "The model is loaded."), ("500", "Loading failed."),
                                                  ("503", "The model is loading."))}
    return spec
