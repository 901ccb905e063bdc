"""Keeping the conversation inside its limits without breaking it.

Two rules hold whatever is done to the history:

- the system prompt and the *pinned* messages (the task prompts) are never dropped;
- an assistant message with tool calls and the tool messages answering it form one
  *group*: they are dropped together or not at all.

Old tool results are shortened first (cheap, keeps the story); only then are the oldest
groups after the task prompt dropped. Every function returns new lists and never changes
a message dict in place, so the caller's copy of the conversation stays intact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from localcode.backends.base import Message

SHORTENED_MARK = "[shortened:"
"""Start of the note that replaces an old tool result's body."""


def groups(messages: Sequence[Message]) -> list[tuple[int, int]]:
    """``(start, end)`` spans (end exclusive) of the message groups, in order.

    An assistant message with ``tool_calls`` groups with the tool messages that directly
    follow it; every other message is a group of its own.
    """
    spans: list[tuple[int, int]] = []
    i = 0
    n = len(messages)
    while i < n:
        j = i + 1
        if messages[i].get("role") == "assistant" and messages[i].get("tool_calls"):
            while j < n and messages[j].get("role") == "tool":
                j += 1
        spans.append((i, j))
        i = j
    return spans


def _protected(messages: Sequence[Message], pinned: Sequence[Message]) -> set[int]:
    """Indices that are never dropped: system messages, the first user message, pinned ones."""
    keep = {i for i, m in enumerate(messages) if m.get("role") == "system"}
    first_user = next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)
    if first_user is not None:
        keep.add(first_user)
    keep |= {i for i, m in enumerate(messages) if any(m is p for p in pinned)}
    return keep


def shorten_tool_results(
    messages: Sequence[Message],
    keep_recent_groups: int = 2,
    min_chars: int = 400,
    head_chars: int = 160,
) -> tuple[list[Message], int]:
    """Replace the bodies of old, long tool results with a short note.

    The last ``keep_recent_groups`` groups are left alone, as are results shorter than
    ``min_chars`` and results shortened before. Returns ``(messages, how many shortened)``.
    """
    out = list(messages)
    spans = groups(out)
    old = spans[: max(0, len(spans) - keep_recent_groups)]
    count = 0
    for start, end in old:
        for i in range(start, end):
            m = out[i]
            content = m.get("content")
            if m.get("role") != "tool" or not isinstance(content, str):
                continue
            if len(content) < min_chars or content.startswith(SHORTENED_MARK):
                continue
            head = content[:head_chars].rsplit("\n", 1)[0] if "\n" in content[:head_chars] else content[:head_chars]
            out[i] = {**m, "content": (
                f"{SHORTENED_MARK} {len(content)} characters of this old tool result were removed to save "
                f"context; call the tool again if you need them] {head}"
            )}
            count += 1
    return out, count


def drop_oldest_groups(
    messages: Sequence[Message],
    max_messages: int | None = None,
    pinned: Sequence[Message] = (),
    fits: Callable[[list[Message]], bool] | None = None,
) -> tuple[list[Message], int]:
    """Drop the oldest droppable groups until the history fits.

    It fits when it has at most ``max_messages`` messages (if given) and ``fits(messages)``
    is true (if given). The newest group is never dropped, nor a group holding a
    protected message (see ``_protected``). Returns ``(messages, how many messages dropped)``.
    """
    out = list(messages)

    def ok(msgs: list[Message]) -> bool:
        return (max_messages is None or len(msgs) <= max_messages) and (fits is None or fits(msgs))

    dropped = 0
    while not ok(out):
        protected = _protected(out, pinned)
        spans = groups(out)
        candidates = [s for s in spans[:-1] if not any(i in protected for i in range(*s))]
        # Only groups after the first protected user message: the task stays the start of the story.
        first_user = min((i for i in protected if out[i].get("role") == "user"), default=-1)
        candidates = [s for s in candidates if s[0] > first_user]
        if not candidates:
            break
        start, end = candidates[0]
        del out[start:end]
        dropped += end - start
    return out, dropped


def unanswered_calls(messages: Sequence[Message]) -> list[str]:
    """Problems with call/result pairing: each tool call id must have exactly one tool message.

    Returns descriptions of the problems (empty when the history is sound).
    """
    problems: list[str] = []
    for start, end in groups(messages):
        m = messages[start]
        ids = [c.get("id") for c in m.get("tool_calls") or []]
        answers = [messages[i].get("tool_call_id") for i in range(start + 1, end)]
        for cid in ids:
            n = answers.count(cid)
            if n != 1:
                problems.append(f"call {cid} at message {start} has {n} results")
        for aid in answers:
            if aid not in ids:
                problems.append(f"tool result for unknown call {aid} after message {start}")
        if m.get("role") == "tool":
            problems.append(f"tool message {start} follows no tool call")
    return problems


def char_count(messages: Sequence[Message]) -> int:
    """Characters of the history as the model roughly sees it (for token estimates)."""
    return len(json.dumps(messages, ensure_ascii=False, default=str))
