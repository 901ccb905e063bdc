"""Prompt Ctrl-C: the first interrupt stops whatever runs, a second one exits at once.

Python raises ``KeyboardInterrupt`` in the main thread only between bytecodes, so a long
native call would hold it back: one llama.cpp prompt evaluation of a few thousand tokens
runs for many seconds inside ``llama_decode``. ``handling()`` therefore installs a SIGINT
handler that first records the request (``requested()``), which native work polls, and
then raises ``KeyboardInterrupt`` as usual:

- the GGUF backend passes ``abort_callback`` to llama.cpp while it evaluates a prompt;
  llama.cpp calls it between graph nodes and stops the computation when it returns true,
  and the backend then raises ``KeyboardInterrupt`` itself (``load_progress`` does the same
  for a model load, between tensors);
- test runs are ended by their sandbox when the run closes it (the local sandbox kills
  the test's process group, the Docker sandbox removes the container);
- threads that generate for ``serve`` check ``requested()`` between tokens.

A second Ctrl-C while the first is being handled exits with status 130 immediately
(``os._exit``): whatever was written stays written, nothing else is cleaned up (a Docker
test container left behind is removed by the next run).

The request is process-wide state by nature (a signal is delivered to the process), so
it lives in this module; ``handling()`` clears it when it ends.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

EXIT_CODE = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""



class _State:
    # A plain attribute, not an Event: reading it runs no Python frame, so the SIGINT handler
    # cannot fire inside ``abort_callback`` below anything but the callback itself.
    requested = False


_state = _State()


def requested() -> bool:
    """Whether an interrupt was asked for (Ctrl-C, or ``request()``)."""
    return _state.requested


def request() -> None:
    """Ask everything that polls ``requested()`` to stop (e.g. from a server's shutdown)."""
    _state.requested = True


def clear() -> None:
    """Forget an interrupt request (after it was handled)."""
    _state.requested = False


def abort_callback(_data: Any = None) -> bool:
    """llama.cpp's ``ggml_abort_callback``: true stops the computation in progress.

    Called from native code between graph nodes; keep it tiny. The SIGINT handler knows
    this function and does not raise inside it (an exception here would be swallowed by ctypes).
    """
    return _state.requested


def load_progress(_progress: float, _data: Any = None) -> bool:
    """llama.cpp's ``llama_progress_callback`` while a model loads: false stops the load."""
    return not _state.requested


_NATIVE_CALLBACKS = (abort_callback.__code__, load_progress.__code__)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _state.requested:
        try:
            sys.stderr.write("\ninterrupted again: exiting now\n")
            sys.stderr.flush()
        finally:
            os._exit(EXIT_CODE)
    _state.requested = True
    if frame is not None and frame.f_code in _NATIVE_CALLBACKS:
        return  # the callback tells llama.cpp to stop; the backend raises KeyboardInterrupt once it has
    raise KeyboardInterrupt


@contextmanager
def handling() -> Iterator[None]:
    """Install the two-step Ctrl-C handler for the duration of the block (main thread only;
    elsewhere, and when SIGINT is ignored, the block runs unchanged)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        clear()
