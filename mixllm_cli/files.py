"""Writing files so a crash never leaves half of one: atomic writes, sha256, publishing a whole set.

Where files live is `paths.py`; what an artifact set holds, with a sha256 per file checked before
anything is read, is `manifest.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# The file every complete artifact set holds; manifest.py reads and writes it.
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one.

    Temp file beside the target, fsync, rename over it, fsync the folder. The file keeps the
    permissions it had (a new one gets the usual 0666 & ~umask, not mkstemp's 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def dump_json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def publish_dir(staging: Path, target: Path) -> None:
    """Move a fully written staging directory into place as `target`, atomically.

    The previous set, if any, is kept as `<target>.prev` until the swap is done, so a crash
    leaves either the old set or the new one in place (never a half-written one).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(target.name + ".prev")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def recover_published(target: Path) -> None:
    """Finish a `publish_dir` that a crash cut between its two renames: bring the old set back."""
    old = target.with_name(target.name + ".prev")
    if not target.exists() and (old / MANIFEST).is_file():
        os.replace(old, target)


def staging_dir(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".staging", dir=target.parent))
    path.chmod(0o777 & ~_umask())
    return path
