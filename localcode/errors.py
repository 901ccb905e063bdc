"""The exception tree of localcode.

Every error a user can cause or fix is a ``LocalcodeError``; its message is one line
that says what happened and what to do next. The CLI prints it and exits 1.
Anything else that escapes is a bug and is shown with its traceback.

    LocalcodeError
    ├── ConfigError               a broken agent config, flag or setting
    ├── MissingDependency         an optional package is not installed (names the pip extra)
    ├── DatasetError              the benchmark dataset is missing or unreadable
    ├── ModelError                the model cannot be loaded or run
    │   ├── ModelNotFound         the model file does not exist and cannot be downloaded
    │   └── ContextWindowExceeded the prompt does not fit the context window
    ├── SandboxError              the test sandbox failed (an infrastructure error, never a test failure)
    │   ├── DockerUnavailable     no Docker engine answers
    │   └── ImageBuildError       the test image could not be built
    └── SessionError              a session to continue does not exist
"""

from __future__ import annotations


class LocalcodeError(Exception):
    """Base class: an error with a one-line, actionable message."""


class ConfigError(LocalcodeError):
    """A broken agent config, command-line flag or setting."""


class MissingDependency(LocalcodeError):
    """An optional dependency is missing.

    The message names the package and the extra that installs it.
    """

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        self.package = package
        self.extra = extra
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"{package} is not installed{what}: pip install 'localcode[{extra}]'"
        )


class DatasetError(LocalcodeError):
    """The benchmark dataset is missing or unreadable."""


class ModelError(LocalcodeError):
    """The model cannot be loaded or run."""


class ModelNotFound(ModelError):
    """The model file does not exist and cannot be downloaded."""


class ContextWindowExceeded(ModelError):
    """The prompt does not fit the model's context window.

    Raised before any generation so the harness can count exhausted context windows.
    """

    def __init__(self, prompt_tokens: int, context_window: int, max_tokens: int = 0) -> None:
        self.prompt_tokens = prompt_tokens
        self.context_window = context_window
        self.max_tokens = max_tokens
        super().__init__(
            f"prompt of {prompt_tokens} tokens does not fit the context window of "
            f"{context_window} tokens: raise server_config.context_window or shorten the history"
        )


class SandboxError(LocalcodeError):
    """The test sandbox failed. An infrastructure error, never a test failure."""


class DockerUnavailable(SandboxError):
    """No Docker engine answers."""


class ImageBuildError(SandboxError):
    """The test image could not be built."""


class SessionError(LocalcodeError):
    """A session to continue does not exist or cannot be read."""
