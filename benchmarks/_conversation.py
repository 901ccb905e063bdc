"""The agent-like conversation the KV-reuse and in-process-vs-server benchmarks replay.

A system prompt, two tools, a task, then per turn: the model's (grammar-forced) tool call
and a tool result of about ``result_tokens`` tokens of real source code (localcode's own
files, cut at a token count with the model's tokenizer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localcode.backends.base import ChatModel, ChatOptions, ChatResult, Message

REPO = Path(__file__).resolve().parent.parent

TOOLS = [
    {"type": "function", "function": {
        "name": "read", "description": "Read a file of the workspace.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "finish", "description": "Say the task is done.",
        "parameters": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}}},
]
SYSTEM = ("You are a coding agent working in a repository. Read the files you need with the read tool, "
          "then fix the bug and call finish with a summary.")
TASK = "The tests in tests/test_models.py fail. Find the cause in backends/ and fix it."


def source_chunks(n: int, result_tokens: int, count_tokens: Callable[[str], int]) -> list[str]:
    """``n`` pieces of source code of about ``result_tokens`` tokens each."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "backends").glob("*.py")))
    lines = text.splitlines(keepends=True)
    chunks, i = [], 0
    while len(chunks) < n:
        piece = ""
        while count_tokens(piece) < result_tokens:
            piece += lines[i % len(lines)]
            i += 1
        chunks.append(piece)
    return chunks


@dataclass
class Turn:
    seconds: float
    result: ChatResult


class Conversation:
    """One side of the benchmark conversation, played a turn at a time (so two sides can alternate).

    ``tools=True``: the tools are in the request and calls are grammar-forced; the tool result
    answers the call. ``tools=False``: plain text turns, the result comes back as a user message
    (for servers that cannot force this template's tool-call format).
    """

    def __init__(self, model: ChatModel, results: list[str], max_tokens: int = 48, tools: bool = True) -> None:
        self.model = model
        self.results = results
        self.tools = TOOLS if tools else None
        self.messages: list[Message] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}]
        self.opts = ChatOptions(max_tokens=max_tokens, temperature=0.0, seed=1,
                                tool_choice="required" if tools else "auto", tool_call_grammar=tools)
        self.turns: list[Turn] = []

    @property
    def done(self) -> bool:
        return len(self.turns) > len(self.results)

    def step(self) -> Turn:
        """One model call, timed; then the next tool result joins the history."""
        t0 = time.perf_counter()
        r = self.model.chat(self.messages, self.tools, self.opts)
        turn = Turn(time.perf_counter() - t0, r)
        i = len(self.turns)
        self.turns.append(turn)
        if i < len(self.results):
            self.messages.append(r.to_message())
            if r.tool_calls:
                self.messages.append({"role": "tool", "tool_call_id": r.tool_calls[0].id, "content": self.results[i]})
            else:
                self.messages.append({"role": "user", "content": self.results[i]})
        return turn


def run(model: ChatModel, results: list[str], max_tokens: int = 48, tools: bool = True) -> list[Turn]:
    """Play the whole conversation: one model call per tool result (plus the first)."""
    c = Conversation(model, results, max_tokens, tools)
    while not c.done:
        c.step()
    return c.turns
