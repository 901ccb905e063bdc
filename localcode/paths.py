"""Where localcode keeps user data.

One environment variable, ``LOCALCODE_HOME``, relocates everything (like ``LLM_USER_PATH``
in simonw/llm). Without it, platformdirs picks the platform's data and cache folders.
Functions, not module constants: the environment is read at call time, so tests can
point ``LOCALCODE_HOME`` at a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "localcode"


def home() -> Path:
    """The root of user data: ``$LOCALCODE_HOME`` or the platform's user data dir."""
    env = os.environ.get("LOCALCODE_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Downloaded models and other re-creatable files."""
    env = os.environ.get("LOCALCODE_HOME")
    if env:
        return Path(env).expanduser() / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def datasets_dir() -> Path:
    """Where ``localcode setup`` clones the benchmark dataset."""
    return home() / "datasets"


def default_dataset_dir() -> Path:
    """The polyglot benchmark as ``localcode setup`` clones it."""
    return datasets_dir() / "polyglot-benchmark"


def runs_dir() -> Path:
    """One folder per benchmark run."""
    return home() / "runs"


def sessions_dir() -> Path:
    """Saved agent sessions (``localcode solve``)."""
    return home() / "sessions"


def user_agents_dir() -> Path:
    """User agent configs, searched after the built-in ones: ``<home>/agents/<kind>/<name>.json``."""
    return home() / "agents"


def package_dir(name: str) -> Path:
    """A folder shipped as package data: ``agents``, ``prompts`` or ``docker``.

    In an installed wheel it is ``localcode/<name>``; in a checkout (editable install) it is
    the top-level folder of the repository. The folders are deliberately not Python packages:
    a ``docker/__init__.py`` would shadow the Docker SDK whenever the checkout is on sys.path.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"localcode's '{name}' folder is missing next to {here}: reinstall localcode")
