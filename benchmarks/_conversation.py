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


def run(model: ChatModel, results: list[str], max_tokens: int = 48) -> list[Turn]:
    """Play the conversation: one model call per tool result (plus the first), timing each call."""
    messages: list[Message] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}]
    opts = ChatOptions(max_tokens=max_tokens, temperature=0.0, seed=1, tool_choice="required", tool_call_grammar=True)
    turns: list[Turn] = []
    for i in range(len(results) + 1):
        t0 = time.perf_counter()
        r = model.chat(messages, TOOLS, opts)
        turns.append(Turn(time.perf_counter() - t0, r))
        if i == len(results):
            break
        messages.append(r.to_message())
        if r.tool_calls:
            messages.append({"role": "tool", "tool_call_id": r.tool_calls[0].id, "content": results[i]})
        else:
            messages.append({"role": "user", "content": results[i]})
    return turns
