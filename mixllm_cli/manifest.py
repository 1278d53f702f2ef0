"""The artifact set's manifest: what a set holds, with a sha256 per file, as typed records.

`manifest.json` is one JSON object (`FORMAT` is its version, the one place to bump it). Each part
of it is a frozen record below. A record keeps the keys it does not model in `extra` and the
optional keys the file left out in `absent`, so a manifest read and written back gives the same
bytes: the sha256s it lists and the shipped file itself stay valid across a pool change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ArtifactError
from .files import MANIFEST, atomic_write_bytes, dump_json, sha256_file

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["FORMAT", "MANIFEST", "AinvFile", "ColdEntry", "DataFile", "EncoderEntry", "FeaturesFile", "FileEntry",
           "HeadFile", "LLMHeadsEntry", "Manifest", "PresetEntry", "Record", "RowsFile", "verify"]

FORMAT = 1

Reader = Callable[[Any, str], Any]


def verify(set_dir: Path, rel: str, expected_sha256: str) -> Path:
    """Return `set_dir/rel` after checking its sha256 against the manifest's."""
    path = set_dir / rel
    if not path.is_file():
        raise ArtifactError(f"{path}: missing artifact file listed in the manifest")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ArtifactError(
            f"{path}: sha256 mismatch (manifest {expected_sha256[:12]}…, file {actual[:12]}…); "
            "the artifact set is corrupt or was edited: retrain or restore it"
        )
    return path


# ---------------------------------------------------------------- reading and writing one record


def _expect(kind: type | tuple[type, ...], what: str) -> Reader:
    def read(value: Any, where: str) -> Any:
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ArtifactError(f"{where}: malformed (expected {what})")
        return value  # unchanged (an int stays an int): the file is written back byte for byte

    return read


_STR = _expect(str, "a string")
_INT = _expect(int, "an integer")
_NUM = _expect((int, float), "a number")
_LIST = _expect(list, "a list")
_MAP = _expect(dict, "an object")


def _meta(read: Reader | None = None, *, key: str | None = None, write: Callable[[Any], Any] | None = None,
          omit_empty: bool = False) -> dict[str, Any]:
    """A record field's metadata: `read` checks and converts the JSON value, `key` is its JSON name when
    that is not the field's, `omit_empty` leaves it out of a record built in code while it is empty."""
    meta = {"read": read, "key": key, "write": write, "omit_empty": omit_empty}
    return {k: v for k, v in meta.items() if v}


def _record(cls: type[Record], **kw: Any) -> dict[str, Any]:
    """The metadata of a field holding one record."""
    return _meta(cls.from_json, write=lambda r: r.to_json(), **kw)


def _record_map(cls: type[Record], **kw: Any) -> dict[str, Any]:
    """The metadata of a field holding a name → record object."""
    def read(value: Any, where: str) -> dict[str, Any]:
        return {k: cls.from_json(v, f"{where}.{k}") for k, v in _MAP(value, where).items()}

    return _meta(read, write=lambda m: {k: r.to_json() for k, r in m.items()}, **kw)


def _key(f: Field[Any]) -> str:
    return str(f.metadata.get("key", f.name))


def _optional(f: Field[Any]) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (dict, list)) and not value)


@dataclass(frozen=True)
class Record:
    """One JSON object of the manifest. `extra`: its keys no field models, written back unchanged.
    `absent`: the optional keys the file did not have, left out again while still empty (None for
    a record built in code: then the fields marked `omit_empty` are left out while empty)."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False)
    absent: frozenset[str] | None = field(default=None, kw_only=True, repr=False, compare=False)

    @classmethod
    def _fields(cls) -> list[Field[Any]]:
        return [f for f in fields(cls) if f.name not in ("extra", "absent")]

    @classmethod
    def from_json(cls, data: Any, where: str) -> Self:
        data = _MAP(data, where)
        kwargs: dict[str, Any] = {}
        absent = set()
        for f in cls._fields():
            key = _key(f)
            if key not in data:
                if not _optional(f):
                    raise ArtifactError(f"{where}: malformed (no '{key}')")
                absent.add(key)
                continue
            value, read = data[key], f.metadata.get("read")
            if value is None and "None" not in str(f.type):
                raise ArtifactError(f"{where}.{key}: malformed (null)")
            kwargs[f.name] = value if value is None or read is None else read(value, f"{where}.{key}")
        known = {_key(f) for f in cls._fields()}
        return cls(**kwargs, extra={k: v for k, v in data.items() if k not in known}, absent=frozenset(absent))

    def to_json(self) -> dict[str, Any]:
        out = dict(self.extra)
        for f in self._fields():
            key, value = _key(f), getattr(self, f.name)
            left_out = key in self.absent if self.absent is not None else f.metadata.get("omit_empty", False)
            if left_out and _empty(value):
                continue
            write = f.metadata.get("write")
            out[key] = value if value is None or write is None else write(value)
        return out


# ---------------------------------------------------------------- the records


@dataclass(frozen=True)
class FileEntry(Record):
    """A file of the set: its path relative to the set and its sha256. The tag projection's entry
    carries the tag pipeline's report in `extra`."""

    file: str = field(metadata=_meta(_STR))
    sha256: str = field(metadata=_meta(_STR))

    @classmethod
    def of(cls, set_dir: Path, rel: str, **values: Any) -> Self:
        """The entry of the file `set_dir/rel` as written, its sha256 computed from it."""
        return cls(file=rel, sha256=sha256_file(set_dir / rel), **values)

    def verify(self, set_dir: Path) -> Path:
        """This file under `set_dir`, after checking its sha256 (always before it is read)."""
        return verify(set_dir, self.file, self.sha256)


@dataclass(frozen=True)
class HeadFile(FileEntry):
    family: str = field(metadata=_meta(_STR))
    n_train: int = field(metadata=_meta(_INT))
    # The head's mean target (what cold LLMs' priors are made of); None when it saw no outcome.
    mean_target: float | None = field(default=None, metadata=_meta(_NUM))


@dataclass(frozen=True)
class AinvFile(FileEntry):
    n_train: int = field(metadata=_meta(_INT))  # the rows A_l = I + Σ e·eᵀ sums over


@dataclass(frozen=True)
class FeaturesFile(FileEntry):
    n_buckets: int = field(metadata=_meta(_INT))


@dataclass(frozen=True)
class DataFile(FileEntry):
    """The training data the set was fitted on: provenance only (the data is not part of the set)."""

    rows: int = field(metadata=_meta(_INT))


@dataclass(frozen=True)
class RowsFile(FileEntry):
    llms: list[str] = field(metadata=_meta(_LIST))  # the LLMs whose outcomes the rows hold


@dataclass(frozen=True)
class LLMHeadsEntry(Record):
    """One LLM's files: its two heads, A⁻¹, and (LLMs added with data) the rows online refits start from."""

    quality: HeadFile = field(metadata=_record(HeadFile))
    length: HeadFile = field(metadata=_record(HeadFile))
    ainv: AinvFile = field(metadata=_record(AinvFile))
    rows: FileEntry | None = field(default=None, metadata=_record(FileEntry, omit_empty=True))

    @property
    def files(self) -> list[FileEntry]:
        return [e for e in (self.quality, self.length, self.ainv, self.rows) if e is not None]


@dataclass(frozen=True)
class ColdEntry(Record):
    """An LLM added without data: the priors that stand in for its heads (training/pool.py)."""

    prior_quality: float = field(metadata=_meta(_NUM))
    prior_response_tokens: float = field(metadata=_meta(_NUM))
    explore_share: float = field(metadata=_meta(_NUM))
    prior_rule: str | None = field(default=None, metadata=_meta(_STR, omit_empty=True))


@dataclass(frozen=True)
class PresetEntry(Record):
    lam: float = field(metadata=_meta(_NUM, key="lambda"))
    target_cost_share: float = field(metadata=_meta(_NUM))
    # The share of the reference LLM's cost `lam` spends on the training data.
    train_cost_share: float | None = field(default=None, metadata=_meta(_NUM, omit_empty=True))


@dataclass(frozen=True)
class EncoderEntry(Record):
    name: str | None = field(metadata=_meta(_STR))
    files: dict[str, str] = field(metadata=_meta(_MAP))  # file name → sha256


@dataclass(frozen=True)
class Manifest(Record):
    """The whole manifest. Frozen: a pool change builds a new one (`with_heads`, `with_cold`, ...)."""

    created_by: str = field(metadata=_meta(_STR))
    versions: dict[str, str] = field(metadata=_meta(_MAP))
    encoder: EncoderEntry = field(metadata=_record(EncoderEntry))
    catalogue_fingerprint: str = field(metadata=_meta(_STR))
    training_data: DataFile = field(metadata=_record(DataFile))
    families: dict[str, str] = field(metadata=_meta(_MAP))
    features: FeaturesFile | None = field(metadata=_record(FeaturesFile))
    cost_scale_usd: float = field(metadata=_meta(_NUM))
    reference_llm: str = field(metadata=_meta(_STR))
    presets: dict[str, PresetEntry] = field(metadata=_record_map(PresetEntry))
    heads: dict[str, LLMHeadsEntry] = field(metadata=_record_map(LLMHeadsEntry))
    seed: int = field(metadata=_meta(_INT))
    # Sets trained before tags and training rows existed lack these two keys.
    tags: FileEntry | None = field(default=None, metadata=_record(FileEntry))
    training_rows: RowsFile | None = field(default=None, metadata=_record(RowsFile))
    cold: dict[str, ColdEntry] = field(default_factory=dict, metadata=_record_map(ColdEntry, omit_empty=True))
    # Pool changes (add-llm, remove-llm), oldest first.
    history: list[dict[str, Any]] = field(default_factory=list, metadata=_meta(_LIST, omit_empty=True))

    @classmethod
    def read(cls, set_dir: Path) -> Manifest:
        path = set_dir / MANIFEST
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise ArtifactError(
                f"{path}: no artifact manifest; run `mixllm train-offline DATA.jsonl` "
                "or reinstall to restore the shipped default"
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{path}: corrupt manifest ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ArtifactError(f"{path}: unsupported manifest format (want {FORMAT})")
        return cls.from_json({k: v for k, v in data.items() if k != "format"}, f"{path}: manifest")

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **super().to_json()}

    def to_bytes(self) -> bytes:
        return dump_json(self.to_json())

    def write(self, set_dir: Path) -> None:
        """Write `set_dir/manifest.json` atomically (the old one or the new one, never half of one)."""
        atomic_write_bytes(set_dir / MANIFEST, self.to_bytes())

    # ---------------------------------------------------------------- pool changes

    def with_heads(self, llm_id: str, entry: LLMHeadsEntry) -> Manifest:
        """`llm_id` served by trained heads (no longer cold)."""
        return replace(self, heads={**self.heads, llm_id: entry}, cold=_without(self.cold, llm_id))

    def with_cold(self, llm_id: str, entry: ColdEntry) -> Manifest:
        """`llm_id` served by priors (its heads, if any, dropped)."""
        return replace(self, heads=_without(self.heads, llm_id), cold={**self.cold, llm_id: entry})

    def without(self, llm_id: str) -> Manifest:
        return replace(self, heads=_without(self.heads, llm_id), cold=_without(self.cold, llm_id))

    def with_history(self, op: str, llm_id: str, **details: Any) -> Manifest:
        at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return replace(self, history=[*self.history, {"op": op, "llm": llm_id, "at": at, **details}])


def _without(entries: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in entries.items() if k != key}
