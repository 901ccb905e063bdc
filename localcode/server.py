"""``localcode serve``: the in-process ``ChatModel`` behind an OpenAI-compatible HTTP API.

Routes (``create_app``):

- ``POST /v1/chat/completions``: non-streaming and SSE streaming (``data: {chunk}`` ...
  ``data: [DONE]``) with ``content``, ``reasoning_content`` and tool-call deltas; ``usage``
  with ``prompt_tokens_details.cached_tokens``; llama-server's ``timings``.
- ``POST /v1/completions``: raw prompt text in, text out, for models that can complete raw
  text (``TextCompleter``); 501 otherwise.
- ``GET /v1/models``: the loaded model under its name; its aliases are accepted too.
- ``GET /health`` (and ``/v1/health``): llama-server's answer, ``200 {"status": "ok"}`` once
  the model is loaded, ``503 {"status": "loading model"}`` before. Open without the API key,
  like llama-server's, so scripts can poll it.

One generation runs at a time (``ModelSlot``): requests wait in a bounded FIFO queue, and
when it is full the answer is 503 with ``Retry-After``. The blocking model runs on one worker
thread, so the event loop keeps answering health checks and refusals while it generates. A
client that disconnects, while queued or while generating, cancels its request: the worker
checks a flag after every token and closes the model's stream, which stops the generation.

Errors are OpenAI-shaped (``{"error": {"message", "type", "param", "code"}}``). A client
mistake is always a 4xx: bad JSON or wrong types 400, a prompt too long for the context 400
``context_length_exceeded``, an unknown model (only with ``strict_model``) 404 ``model_not_found``, a missing or wrong API
key 401 ``invalid_api_key``, an oversized body 413, an unknown route 404, a wrong method 405.
Only a failing model (or a bug) answers 500.

The request ``model`` may name anything: the loaded model answers, and the response names
it (as llama-server and LM Studio do, so clients configured for another server's model names,
like the original localcode tool's ``glm-4.7-flash-q6k``, work unchanged). With
``strict_model`` (``serve --strict-model``) only a missing, empty or ``default`` name, the
model's name or one of its aliases is accepted, as OpenAI does; others get 404.

Importing this module imports FastAPI; the CLI imports it only when ``serve`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.responses import Response

from localcode.backends.base import ChatModel, ChatOptions, ChatResult, StreamEvent
from localcode.errors import ContextWindowExceeded

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message as ASGIMessage, Receive, Scope, Send

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_QUEUE_SIZE = 16
"""Requests that may wait while one generates; more are refused with 503."""
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
"""Largest request body accepted (413 beyond): ample for a full 256K-token context as JSON."""


@runtime_checkable
class TextCompleter(Protocol):
    """A model that can also continue raw text, without a chat template (``/v1/completions``)."""

    def stream_text(self, prompt: str, options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        """``content`` deltas, then ``done`` with the result; closing the iterator cancels."""
        ...


class QueueFull(Exception):
    """The bounded queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy: retry after {retry_after} s")
        self.retry_after = retry_after


class ClientDisconnected(Exception):
    """The client went away before its answer was ready."""


class ModelNotReady(Exception):
    """The model is still loading (or failed to load)."""


class BodyTooLarge(Exception):
    """The request body exceeds the limit."""


class Generation:
    """One request's run on the model thread; events reach the event loop through a queue.

    The worker thread iterates the model's stream, checks ``cancel`` after every event and
    closes the stream when it is set (the model then stops generating). With
    ``forward_deltas`` off only the final ``done`` (or the exception) crosses the thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, forward_deltas: bool) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[StreamEvent | BaseException | None] = asyncio.Queue()
        self.forward_deltas = forward_deltas
        self.cancel = threading.Event()
        self.started = time.perf_counter()

    def run(self, make_stream: Callable[[], Iterator[StreamEvent]]) -> None:
        """Body of the worker thread: iterate, forward, stop on cancel; never raises."""
        put = self._loop.call_soon_threadsafe
        stream: Iterator[StreamEvent] | None = None
        try:
            stream = make_stream()
            for ev in stream:
                if self.cancel.is_set():
                    break
                if ev.kind == "done" or self.forward_deltas:
                    put(self._queue.put_nowait, ev)
        except KeyboardInterrupt:  # the model stopped for Ctrl-C (``localcode.interrupt``): shutting down
            put(self._queue.put_nowait, ModelNotReady("the server is shutting down"))
        except BaseException as e:  # handed to the request; a failing model must not kill the worker
            put(self._queue.put_nowait, e)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing the model stream failed")
            put(self._queue.put_nowait, None)

    async def next(self) -> StreamEvent | None:
        """The next event; ``None`` after the last. Re-raises the model's exception."""
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def result(self) -> ChatResult:
        """Wait for the ``done`` event and return its result."""
        while True:
            ev = await self.next()
            if ev is None:
                from localcode.errors import ModelError

                raise ModelError("the model stream ended without a result")
            if ev.kind == "done" and ev.result is not None:
                return ev.result


class ModelSlot:
    """One generation at a time on one worker thread, with a bounded FIFO queue in front.

    ``pending`` counts the running request plus the waiting ones; a new request is refused
    (``QueueFull``) when ``1 + queue_size`` are pending. The slot is released when the worker
    thread finishes, not when the client leaves, so a cancelled generation never overlaps the
    next one.
    """

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.pending = 0
        self.current: Generation | None = None
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="localcode-generate")
        self._mean_seconds = 5.0

    def retry_after(self) -> int:
        """Seconds until a queue place is likely free: the mean time of recent generations."""
        return max(1, min(600, math.ceil(self._mean_seconds)))

    async def start(self, request: Request, make_stream: Callable[[], Iterator[StreamEvent]],
                    forward_deltas: bool) -> Generation:
        """Queue, then start generating. Raises ``QueueFull`` or ``ClientDisconnected``."""
        if self.pending >= 1 + self.queue_size:
            raise QueueFull(self.retry_after())
        self.pending += 1
        try:
            if self._lock.locked():
                await until_disconnected(request, self._lock.acquire(), on_abandon=self._lock.release)
            else:
                await self._lock.acquire()
        except BaseException:
            self.pending -= 1
            raise
        loop = asyncio.get_running_loop()
        gen = Generation(loop, forward_deltas)
        self.current = gen
        fut = loop.run_in_executor(self._executor, gen.run, make_stream)
        fut.add_done_callback(lambda _f: self._finished(gen))
        return gen

    def _finished(self, gen: Generation) -> None:
        seconds = time.perf_counter() - gen.started
        self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds
        self.current = None
        self.pending -= 1
        self._lock.release()

    def shutdown(self) -> None:
        """Cancel the running generation and stop the worker thread."""
        if self.current is not None:
            self.current.cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=True)


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client has disconnected (the body must already be read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnected(request: Request, awaitable: Awaitable[T],
                             on_abandon: Callable[[], Any] | None = None) -> T:
    """Await ``awaitable`` unless the client disconnects first (then ``ClientDisconnected``).

    ``on_abandon`` undoes the awaitable's effect when it completed in the same instant as the
    disconnect (e.g. releases a lock it acquired).
    """
    task = asyncio.ensure_future(awaitable)
    watcher = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        if on_abandon is not None:
            on_abandon()
    raise ClientDisconnected()


class ServerState:
    """What the routes share: the model (``None`` while loading), its names, the slot, the key."""

    def __init__(self, model: ChatModel | None, names: list[str], api_key: str | None,
                 queue_size: int, max_body_bytes: int, strict_model: bool = False) -> None:
        self.model = model
        self.names = names
        self.strict_model = strict_model
        self.api_key = api_key
        self.queue_size = queue_size
        self.max_body_bytes = max_body_bytes
        self.load_error: str | None = None
        self.slot: ModelSlot | None = None
        self.created = int(time.time())

    def set_model(self, model: ChatModel) -> None:
        """The model finished loading: start answering. Safe to call from another thread."""
        self.model = model

    def set_load_error(self, message: str) -> None:
        """Loading failed: health answers 500 with the message."""
        self.load_error = message

    def ready_model(self) -> ChatModel:
        """The model, or ``ModelNotReady``."""
        if self.model is None:
            raise ModelNotReady(self.load_error or "Loading model")
        return self.model

    def accepts(self, name: str | None) -> bool:
        """Whether a request's ``model`` is answered: any name, or with ``strict_model`` only this
        model's names (missing, empty or ``default`` included)."""
        return not self.strict_model or not name or name == "default" or name in self.names

    def response_name(self, requested: str | None) -> str:
        """The ``model`` a response carries: the name the request used when it is one of the
        loaded model's names, else the loaded model's id."""
        return requested if requested in self.names else self.names[0]


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` (by header, and while reading)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_error(send, 413, self._message(), "request_too_large")
                    return
        seen = 0

        async def limited() -> ASGIMessage:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes: send a shorter request"


async def _send_error(send: Send, status: int, message: str, code: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": code}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_app(model: ChatModel | None, model_name: str, api_key: str | None = None,
               queue_size: int = DEFAULT_QUEUE_SIZE, aliases: Iterable[str] = (),
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, strict_model: bool = False) -> FastAPI:
    """The OpenAI-compatible app over ``model``.

    ``model`` may be ``None`` while it loads; call ``app.state.localcode.set_model(m)`` when it
    is ready (health answers 503 until then). ``model_name`` is the id ``/v1/models`` shows;
    ``aliases`` are other names requests may use. With ``api_key``, every route but health
    needs ``Authorization: Bearer <api_key>``. ``queue_size`` requests may wait while one
    generates. ``strict_model`` refuses requests that name another model (404), as OpenAI does;
    by default any name is answered by this model.
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from sse_starlette import EventSourceResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from localcode import server_openai as oa

    names = list(dict.fromkeys([model_name, *[a for a in aliases if a]]))
    state = ServerState(model, names, api_key, queue_size, max_body_bytes, strict_model)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.slot = ModelSlot(queue_size)
        try:
            yield
        finally:
            await asyncio.to_thread(state.slot.shutdown)

    app = FastAPI(title="localcode serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.localcode = state
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    def error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
              code: str | int | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(oa.error_body(message, type_, param, code), status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {404: f"no route {request.url.path}: see /v1/models, /v1/chat/completions, /v1/completions",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(
            exc.status_code, str(exc.detail))
        return error(exc.status_code, message, code=codes.get(exc.status_code), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error(400, str(exc.errors()[:1]))

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge) -> Response:
        return error(413, str(exc), code="request_too_large")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        return error(500, f"internal server error: {type(exc).__name__}: {exc}", type_="server_error")

    def unauthorized(request: Request) -> Response | None:
        if state.api_key is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip() == state.api_key:
            return None
        return error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")

    async def parse(request: Request, schema: type[T]) -> T | Response:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return error(400, f"the request body is not valid JSON: {e}")
        if not isinstance(data, dict):
            return error(400, "the request body must be a JSON object")
        try:
            return schema.model_validate(data)  # type: ignore[attr-defined,no-any-return]
        except ValidationError as e:
            first = e.errors()[0]
            param = ".".join(str(x) for x in first["loc"]) or None
            return error(400, f"invalid request: {param or 'body'}: {first['msg']}"
                         + (f" ({e.error_count() - 1} more errors)" if e.error_count() > 1 else ""), param=param)

    def check_model(name: str | None) -> Response | None:
        if state.accepts(name):
            return None
        return error(404, f"the model '{name}' does not exist here: this server serves '{state.names[0]}' "
                          "(see /v1/models)", param="model", code="model_not_found")

    def model_failure(exc: BaseException) -> Response:
        if isinstance(exc, ContextWindowExceeded):
            # OpenAI's wording, plus llama-server's numbers for clients that read them
            body = oa.error_body(f"This model's maximum context length is {exc.context_window} tokens. However, "
                                 f"your messages resulted in {exc.prompt_tokens} tokens. Please reduce the length "
                                 "of the messages.", param="messages", code="context_length_exceeded")
            body["error"].update(n_prompt_tokens=exc.prompt_tokens, n_ctx=exc.context_window)
            return JSONResponse(body, status_code=400)
        if isinstance(exc, ModelNotReady):
            return error(503, str(exc), type_="unavailable_error", code=503)
        if isinstance(exc, QueueFull):
            return error(503, str(exc), type_="server_error", code="server_busy",
                         headers={"Retry-After": str(exc.retry_after)})
        log.error("generation failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return error(500, f"the model failed: {type(exc).__name__}: {exc}", type_="server_error")

    async def generate(request: Request, make_stream: Callable[[], Iterator[StreamEvent]],
                       streaming: bool) -> tuple[Generation, StreamEvent | None] | Response | None:
        """Queue and start; for streams, wait for the first event so errors get a status.

        ``None`` means the client left; a ``Response`` is an error to send.
        """
        assert state.slot is not None, "the app runs inside its lifespan"
        try:
            gen = await state.slot.start(request, make_stream, forward_deltas=streaming)
        except ClientDisconnected:
            return None
        except QueueFull as e:
            return model_failure(e)
        try:
            first = await until_disconnected(request, gen.next()) if streaming else None
        except ClientDisconnected:
            gen.cancel.set()
            return None
        except Exception as e:
            gen.cancel.set()
            return model_failure(e)
        return gen, first

    @app.get("/health")
    @app.get("/v1/health", include_in_schema=False)
    async def health() -> Response:
        if state.model is not None:
            return JSONResponse({"status": "ok"})
        if state.load_error is not None:
            return JSONResponse({"status": "error", **oa.error_body(state.load_error, "server_error", None, 500)},
                                status_code=500)
        return JSONResponse({"status": "loading model", **oa.error_body("Loading model", "unavailable_error", None, 503)},
                            status_code=503)

    @app.get("/v1/models")
    @app.get("/models", include_in_schema=False)
    async def models(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        info = state.model.info if state.model is not None else None
        return JSONResponse(oa.models_list(state.names, info, state.created))

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions", include_in_schema=False)
    async def chat_completions(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        req = await parse(request, oa.ChatCompletionRequest)
        if not isinstance(req, oa.ChatCompletionRequest):
            return req
        if (wrong := check_model(req.model)) is not None:
            return wrong
        try:
            messages, tools, options = req.to_call()
            model = state.ready_model()
        except oa.RequestError as e:
            return error(e.status, e.message, param=e.param, code=e.code)
        except ModelNotReady as e:
            return model_failure(e)
        started = await generate(request, lambda: model.stream(messages, tools, options), req.stream)
        if started is None:
            return Response(status_code=499)
        if not isinstance(started, tuple):
            return started
        gen, first = started
        completion_id, created = oa.new_id("chatcmpl")
        name = state.response_name(req.model)
        if not req.stream:
            try:
                result = await until_disconnected(request, gen.result())
            except ClientDisconnected:
                gen.cancel.set()
                return Response(status_code=499)
            except Exception as e:
                return model_failure(e)
            return JSONResponse(oa.chat_completion(result, name, completion_id, created)
                                .model_dump(mode="json", exclude_none=True))
        writer = oa.ChunkWriter(name, completion_id, created, req.include_usage)

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                yield {"data": writer.first()}
                ev = first
                while ev is not None:
                    for chunk in writer.event(ev):
                        yield {"data": chunk}
                    ev = await gen.next()
                yield {"data": "[DONE]"}
            except Exception as e:  # the headers are sent: report the failure in the stream
                log.error("generation failed mid-stream: %s: %s", type(e).__name__, e)
                yield {"data": json.dumps(oa.error_body(f"the model failed: {type(e).__name__}: {e}",
                                                        "server_error", None, 500))}
            finally:
                gen.cancel.set()

        return EventSourceResponse(events(), sep="\n", ping=15)

    @app.post("/v1/completions")
    @app.post("/completions", include_in_schema=False)
    async def completions(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        req = await parse(request, oa.CompletionRequest)
        if not isinstance(req, oa.CompletionRequest):
            return req
        if (wrong := check_model(req.model)) is not None:
            return wrong
        try:
            prompt, options = req.to_call()
            model = state.ready_model()
        except oa.RequestError as e:
            return error(e.status, e.message, param=e.param, code=e.code)
        except ModelNotReady as e:
            return model_failure(e)
        if not isinstance(model, TextCompleter):
            return error(501, f"the {model.info.backend} backend cannot complete raw text: "
                              "use /v1/chat/completions", type_="not_implemented_error", code="not_implemented")
        started = await generate(request, lambda: model.stream_text(prompt, options), req.stream)
        if started is None:
            return Response(status_code=499)
        if not isinstance(started, tuple):
            return started
        gen, first = started
        completion_id, created = oa.new_id("cmpl")
        name = state.response_name(req.model)
        if not req.stream:
            try:
                result = await until_disconnected(request, gen.result())
            except ClientDisconnected:
                gen.cancel.set()
                return Response(status_code=499)
            except Exception as e:
                return model_failure(e)
            return JSONResponse(oa.text_completion(result, name, completion_id, created)
                                .model_dump(mode="json", exclude_none=True))

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                ev = first
                while ev is not None:
                    if ev.kind == "content" and ev.text:
                        yield {"data": oa.text_completion_chunk(ev.text, name, completion_id, created)}
                    elif ev.kind == "done" and ev.result is not None:
                        yield {"data": oa.text_completion_chunk("", name, completion_id, created, ev.result,
                                                                req.include_usage)}
                    ev = await gen.next()
                yield {"data": "[DONE]"}
            except Exception as e:
                log.error("generation failed mid-stream: %s: %s", type(e).__name__, e)
                yield {"data": json.dumps(oa.error_body(f"the model failed: {type(e).__name__}: {e}",
                                                        "server_error", None, 500))}
            finally:
                gen.cancel.set()

        return EventSourceResponse(events(), sep="\n", ping=15)

    def openapi() -> dict[str, Any]:
        # The routes parse their bodies themselves; the schema declares them (``oa.document``).
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            from localcode import __version__

            app.openapi_schema = oa.document(get_openapi(
                title=app.title, version=__version__, routes=app.routes,
                description="OpenAI-compatible API of one model loaded in-process by localcode."))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
