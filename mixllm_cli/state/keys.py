"""API keys of `mixllm serve`, kept in the state store so that every replica shares them.

A key is `mxk_` and 43 characters of `secrets.token_urlsafe(32)` (256 random bits). It is shown
once, when it is created; the store keeps its sha256, a short prefix for people to recognise it,
its limits (requests per minute, a USD budget for chat completions) and what it has spent.

Why a plain sha256 and not a password hash (bcrypt, scrypt, argon2): those are slow on purpose so
that guessing a *low-entropy* password from its stolen hash stays expensive. A key of 256 random
bits cannot be guessed whatever the hash costs, so a slow hash would buy nothing and would cost
every request milliseconds (or force the server to keep keys in clear to avoid it). A fast hash
also makes the stored value a plain index: a key is found by `key_sha256 = ?`.

Every function takes a store (`StoreBase`: SQLite or PostgreSQL) and uses SQL both backends speak;
writes run in the store's one-writer transaction, and spend is added in the database
(`spent_usd = spent_usd + ?`), so concurrent replicas never lose an increment.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from .base import StoreBase

KEY_PREFIX = "mxk_"
SHOWN_CHARS = 8  # of the random part, kept in clear as the key's `prefix` (48 of its 256 bits)
MAX_RPM = 1_000_000
MAX_USD = 1e9
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
ID_RE = re.compile(r"key_[0-9a-f]{12}")
_COLUMNS = "id, name, prefix, key_sha256, created_s, rpm, max_usd, spent_usd, revoked_s"


@dataclass(frozen=True)
class KeyRecord:
    """One key as the store holds it (never the key itself)."""

    id: str
    name: str
    prefix: str
    key_sha256: str
    created_s: float
    rpm: int | None
    max_usd: float | None
    spent_usd: float
    revoked_s: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_s is not None

    def to_dict(self) -> dict[str, Any]:
        """What `keys list --json` shows: everything but the hash."""
        return {"id": self.id, "name": self.name, "prefix": self.prefix, "created_s": self.created_s,
                "rpm": self.rpm, "max_usd": self.max_usd, "spent_usd": self.spent_usd,
                "revoked_s": self.revoked_s}


def _record(row: tuple[Any, ...]) -> KeyRecord:
    kid, name, prefix, sha, created, rpm, max_usd, spent, revoked = row
    return KeyRecord(str(kid), str(name), str(prefix), str(sha), float(created),
                     None if rpm is None else int(rpm), None if max_usd is None else float(max_usd),
                     float(spent), None if revoked is None else float(revoked))


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str | bytes) -> str:
    """The stored form of a key: its sha256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key).hexdigest()


def check_limits(rpm: int | None, max_usd: float | None) -> None:
    if rpm is not None and not 1 <= rpm <= MAX_RPM:
        raise UsageError(f"must be between 1 and {MAX_RPM:,} (got {rpm})", param="rpm")
    if max_usd is not None and not (math.isfinite(max_usd) and 0 < max_usd <= MAX_USD):
        raise UsageError(f"must be a number of dollars above 0 and at most {MAX_USD:g} (got {max_usd})",
                         param="max_usd")


def create_key(store: StoreBase, name: str, *, rpm: int | None = None, max_usd: float | None = None,
               now: float | None = None) -> tuple[KeyRecord, str]:
    """A new key named `name`: its record, and the key itself (to show once; it is not stored)."""
    if not NAME_RE.fullmatch(name) or ID_RE.fullmatch(name):
        raise UsageError(f"{name!r} is not a key name: use 1 to 64 letters, digits and . _ @ -, starting with a "
                         "letter or digit (and not of the form key_<12 hex digits>, which is how ids look)")
    check_limits(rpm, max_usd)
    key = new_key()
    record = KeyRecord("key_" + secrets.token_hex(6), name, key[:len(KEY_PREFIX) + SHOWN_CHARS], hash_key(key),
                       time.time() if now is None else now, rpm, max_usd, 0.0, None)
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM api_keys WHERE name = ? AND revoked_s IS NULL", (name,)).fetchone():
            raise UsageError(f"a key named {name!r} exists; revoke it first (mixllm keys revoke {name}) or choose "
                             "another name")
        conn.execute(f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (record.id, record.name, record.prefix, record.key_sha256, record.created_s, record.rpm,
                      record.max_usd, record.spent_usd, record.revoked_s))
    return record, key


def list_keys(store: StoreBase) -> list[KeyRecord]:
    """Every key, revoked ones too, oldest first."""
    if not store.exists():
        return []
    return [_record(r) for r in store.conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_s, id")]


def revoke_key(store: StoreBase, name_or_id: str, *, now: float | None = None) -> tuple[KeyRecord, bool]:
    """Revoke the key with this id, else the unrevoked key with this name. Returns its record and
    whether this call revoked it (False: it was revoked already)."""
    now = time.time() if now is None else now
    with store.transaction() as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (name_or_id,)).fetchall()
        if not rows:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE name = ? ORDER BY revoked_s IS NULL DESC, "
                                "created_s DESC", (name_or_id,)).fetchall()
        if not rows:
            raise UsageError(f"no key named or with the id {name_or_id!r}; see mixllm keys list")
        record = _record(rows[0])
        if record.revoked:
            return record, False
        conn.execute("UPDATE api_keys SET revoked_s = ? WHERE id = ?", (now, record.id))
    return _record((*rows[0][:8], now)), True


def key_table(store: StoreBase) -> dict[str, KeyRecord]:
    """Every key by its sha256: what a replica holds in memory to check requests."""
    rows = store.conn.execute(f"SELECT {_COLUMNS} FROM api_keys").fetchall()
    return {str(r[3]): _record(r) for r in rows}


def spent_usd(store: StoreBase, key_id: str) -> float:
    """What the key has spent so far, every replica's calls included."""
    row = store.conn.execute("SELECT spent_usd FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return 0.0 if row is None else float(row[0])


def add_spend(store: StoreBase, key_id: str, usd: float) -> None:
    """Count a call's cost against the key, atomically (replicas add at once without losing any)."""
    if not (math.isfinite(usd) and usd > 0):
        return
    with store.transaction() as conn:
        conn.execute("UPDATE api_keys SET spent_usd = spent_usd + ? WHERE id = ?", (usd, key_id))


def count_requests(store: StoreBase, minute: int, counted: Mapping[str, int]) -> dict[str, int]:
    """Add this replica's requests of `minute` (unix time // 60) per key id, and return every replica's
    totals for that minute. Counts of minutes before the previous one are dropped on the way."""
    if counted:
        with store.transaction() as conn:
            for key_id, n in counted.items():
                conn.execute("INSERT INTO api_key_usage (key_id, minute, requests) VALUES (?, ?, ?) "
                             "ON CONFLICT (key_id, minute) DO UPDATE SET requests = api_key_usage.requests + "
                             "excluded.requests", (key_id, minute, n))
            conn.execute("DELETE FROM api_key_usage WHERE minute < ?", (minute - 1,))
    return {str(k): int(n) for k, n in store.conn.execute(
        "SELECT key_id, requests FROM api_key_usage WHERE minute = ?", (minute,))}
