"""Inference backends behind one OpenAI-shaped chat interface (``ChatModel``).

Implementations: llama-cpp-python (``llama_cpp``), mlx-lm (``mlx``), an OpenAI-compatible
HTTP endpoint (``http``) and a scripted model for tests (``scripted``). Import the one you
need from its module; ``load_model`` picks one for an agent config.
"""

from localcode.backends.base import (
    ChatModel,
    ChatOptions,
    ChatResult,
    MalformedToolCall,
    Message,
    ModelInfo,
    StreamEvent,
    Timings,
    ToolCall,
    ToolSchema,
    Usage,
)

__all__ = [
    "ChatModel",
    "ChatOptions",
    "ChatResult",
    "MalformedToolCall",
    "Message",
    "ModelInfo",
    "StreamEvent",
    "Timings",
    "ToolCall",
    "ToolSchema",
    "Usage",
]
