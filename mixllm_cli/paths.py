"""Where files live: one place decides.

`--home`, else `MIXLLM_HOME`, else the platform's user data dir. The shipped default artifact set
(the repo's `artifacts/`) and catalogue are read-only; what a user trains goes to `<home>/`.
"""


from __future__ import annotations

import os
import sys
from pathlib import Path

from .files import recover_published
from .manifest import MANIFEST

REPO_ROOT = Path(__file__).resolve().parent.parent


def shipped_artifacts_dir() -> Path:
    """The read-only default artifact set (`MIXLLM_DEFAULT_ARTIFACTS` overrides it, for tests)."""
    env = os.environ.get("MIXLLM_DEFAULT_ARTIFACTS")
    return Path(env) if env else REPO_ROOT / "artifacts"


def shipped_catalogue_path() -> Path:
    """The read-only default catalogue (`MIXLLM_DEFAULT_CATALOGUE` overrides it, for tests)."""
    env = os.environ.get("MIXLLM_DEFAULT_CATALOGUE")
    return Path(env) if env else REPO_ROOT / "models.yaml"


def catalogue_path(home: Path | str | None = None, explicit: Path | str | None = None) -> Path:
    """The catalogue to use: `--catalogue`, else the user's `<home>/models.yaml`, else the shipped one."""
    if explicit:
        return Path(explicit)
    user = home_dir(home) / "models.yaml"
    return user if user.is_file() else shipped_catalogue_path()


def home_dir(home: Path | str | None = None) -> Path:
    """Resolve the user's home for mixllm: `--home`, `MIXLLM_HOME`, or the platform data dir."""
    if home:
        return Path(home).expanduser()
    env = os.environ.get("MIXLLM_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "mixllm"


def home_artifacts_dir(home: Path | str | None = None) -> Path:
    return home_dir(home) / "artifacts"


def active_artifacts_dir(home: Path | str | None = None) -> Path:
    """The user's trained set when it exists, else the shipped default."""
    mine = home_artifacts_dir(home)
    recover_published(mine)
    if (mine / MANIFEST).is_file():
        return mine
    return shipped_artifacts_dir()
