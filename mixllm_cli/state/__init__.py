"""The state store: decisions, the queue of calls in flight, observed latencies, the feedback log.

`open_store` picks the backend: the home's SQLite file (`state.sqlite`) or a shared PostgreSQL
(`state.postgres`); both implement `state.base.StoreBase`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from .base import StoreBase


def open_store(home: Path | str | None = None, url: str | None = None) -> StoreBase:
    """The state store: `url` (`postgresql://...`), else `$MIXLLM_STORE`, else the home's SQLite file."""
    import os

    from .sqlite import StateStore

    url = url or os.environ.get("MIXLLM_STORE") or None
    if url is None:
        return StateStore.for_home(home)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        return StateStore(Path(url[len("sqlite:///"):]))
    raise UsageError(f"unknown store URL {url.split(':', 1)[0]!r}; use postgresql://USER@HOST:PORT/DB "
                     "or sqlite:///PATH", param="store")
