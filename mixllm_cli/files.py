"""Writing files so a crash never leaves half of one: atomic writes, sha256, publishing a whole set.

Where files live is `paths.py`; what an artifact set holds, with a sha256 per file checked before
anything is read, is `manifest.py`.

Leftovers. A process killed mid-write leaves its temp file (`.<name>.<owner>.<random>.tmp`) or
its staging folder (`.<target>.<owner>.<random>.staging`, e.g. a killed `train-offline`'s)
beside the target. `<owner>` is `p<pid>h<host hash>`, so the next write or publish in that folder
(`sweep_leftovers`) removes those whose process is gone: same host and no such pid. A live
writer's, this process's own (another thread's) and another host's are left alone; another
host's only once older than STALE_TMP_S (temp files: no write takes an hour) or STALE_STAGING_S
(staging folders: a training run may take hours), and likewise the leftovers of versions that
named no owner, and only those of the very file or set being written (a temp-file-shaped name
of some other program's in the same folder is never touched). A pid reused by another process
keeps its leftover until that one ends too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

# The file every complete artifact set holds; manifest.py reads and writes it.
MANIFEST = "manifest.json"

STALE_TMP_S = 3600.0  # a temp file of unknown owner this old is no one's (see the module docstring)
STALE_STAGING_S = 24 * 3600.0  # a staging folder of unknown owner this old is no one's
TMP_SUFFIX, STAGING_SUFFIX = ".tmp", ".staging"
# tempfile's random part: 8 of [a-z0-9_].
_OWNED = re.compile(r"^\..*\.p(\d{1,10})h([0-9a-f]{8})\.[a-z0-9_]{8}(?:\.tmp|\.staging)$")
_UNOWNED_TAIL = re.compile(r"[a-z0-9_]{8}(?:\.tmp|\.staging)?")


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


@functools.cache
def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "surrogatepass")).hexdigest()[:8]


def owner_tag() -> str:
    """`p<pid>h<host hash>`: who a temp file or staging folder belongs to (see `sweep_leftovers`)."""
    return f"p{os.getpid()}h{_host()}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":
        return True  # this process's (another thread's): live. Windows: os.kill would end the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: alive (never guess a leftover is dead)
    return True


def _stale(entry: os.DirEntry[str], now: float, unowned: tuple[str, ...]) -> bool:
    """Whether `entry` is a leftover whose writer is gone (see the module docstring)."""
    owned = _OWNED.match(entry.name)
    if owned is None and not any(entry.name.startswith(p) and _UNOWNED_TAIL.fullmatch(entry.name[len(p):])
                                 for p in unowned):
        return False  # not ours
    if owned is not None and owned.group(2) == _host():
        return not _pid_alive(int(owned.group(1)))
    try:
        age = now - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    is_dir = entry.is_dir(follow_symlinks=False)
    return age > (STALE_STAGING_S if is_dir else STALE_TMP_S)


def sweep_leftovers(folder: Path, unowned: tuple[str, ...] = ()) -> list[Path]:
    """Remove the temp files and staging folders in `folder` that killed writers left (the module
    docstring says which); `unowned`: name prefixes (e.g. `.manifest.json.`) whose ownerless
    leftovers, from versions that named no owner, are ours too. Returns what was removed. Never
    fails: what it cannot read or remove is left for the next sweep."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or not _stale(entry, now, unowned):
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def temp_dir(parent: Path, prefix: str) -> Path:
    """A new private folder `parent/<prefix><owner>.<random>.staging` (`sweep_leftovers` removes it
    once its process is gone)."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_tag()}.", suffix=STAGING_SUFFIX, dir=parent))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one.

    Temp file beside the target, fsync, rename over it, fsync the folder. The file keeps the
    permissions it had (a new one gets the usual 0666 & ~umask, not mkstemp's 0600). Leftovers
    of killed writers in the folder are swept first (`sweep_leftovers`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(path.parent, unowned=(f".{path.name}.",))
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=TMP_SUFFIX, dir=path.parent)
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
    """A new folder beside `target` to write a whole set into before `publish_dir` swaps it in;
    the leftovers of killed writers there (a killed `train-offline`'s staging) are swept first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(target.parent, unowned=(f".{target.name}.",))
    path = temp_dir(target.parent, f".{target.name}.")
    path.chmod(0o777 & ~_umask())
    return path
