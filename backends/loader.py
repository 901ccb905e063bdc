"""Load the chat model an agent config names: ``load_model(cfg) -> ChatModel``.

``cfg.backend`` picks the implementation: ``llama_cpp`` (a GGUF in-process), ``mlx``
(an MLX model in-process) or ``http`` (an OpenAI-compatible endpoint at ``cfg.url``).
Heavy libraries are imported only for the backend that is used.
"""

from __future__ import annotations

from typing import Any

from localcode.backends.base import ChatModel
from localcode.config import AgentConfig
from localcode.errors import ConfigError


def load_model(cfg: AgentConfig, **overrides: Any) -> ChatModel:
    """Load ``cfg``'s model once. ``overrides`` go to the backend's constructor (load parameters).

    Raises ``ModelNotFound``, ``MissingDependency``, ``ConfigError`` or ``ModelError``.
    """
    backend = cfg.backend
    if backend == "http":
        from localcode.backends.http import HttpChatModel

        if not cfg.url:
            raise ConfigError(f"agent '{cfg.name}' uses the HTTP backend but sets no url: add \"url\": \"http://host:port/v1\"")
        return HttpChatModel.from_agent(cfg, **overrides)
    if backend == "mlx":
        from localcode.backends.mlx import MlxChatModel

        return MlxChatModel.from_agent(cfg, **overrides) if overrides else MlxChatModel.from_agent(cfg)
    from localcode.backends.llama_cpp import LlamaCppChatModel

    return LlamaCppChatModel(cfg, **overrides)
