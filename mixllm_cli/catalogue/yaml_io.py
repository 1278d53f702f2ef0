"""The catalogue file: load it (strict YAML, problems located by line), dump it, and save it atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CatalogueError
from ..files import atomic_write_bytes
from .checks import CATALOGUE_VERSION
from .model import Catalogue, parse_catalogue


def _yaml_loader() -> type:
    import yaml  # lazily: the CLI's start-up must not pay for it

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser is much faster

    class _StrictLoader(base):  # type: ignore[misc, valid-type]
        """PyYAML keeps the last of two equal keys silently; in a catalogue that hides a typo."""

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return _StrictLoader


def load_catalogue(path: str | os.PathLike[str]) -> Catalogue:
    """Read and validate a catalogue file."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise CatalogueError(f"{name}: no such file") from None
    except OSError as exc:
        raise CatalogueError(f"{name}: cannot read: {exc.strerror or exc}") from None
    return loads_catalogue(raw, name)


def loads_catalogue(raw: bytes, name: str = "models.yaml") -> Catalogue:
    """Validate a catalogue file's bytes; `name` is the file named in error messages."""
    import yaml

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogueError(f"{name}:{line}: not valid UTF-8") from None
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        loc = f"{name}:{mark.line + 1}" if mark is not None else name
        raise CatalogueError(f"{loc}: invalid YAML: {problem}") from None
    try:
        return parse_catalogue(data, name)
    except CatalogueError:
        # Only a bad file pays for a second pass that finds each problem's line.
        return parse_catalogue(data, name, line_map(text))


def line_map(text: str) -> dict[str, int]:
    """1-based lines of `version`, `llms`, each `llms[i]` and each of its keys (`llms[i].sources.slots` too)."""
    import yaml

    try:
        root = yaml.compose(text, Loader=_yaml_loader())
    except yaml.YAMLError:
        return {}
    out: dict[str, int] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    sub = f"{path}.{key.value}" if path else key.value
                    out.setdefault(sub, key.start_mark.line + 1)
                    walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = f"{path}[{i}]"
                out.setdefault(sub, item.start_mark.line + 1)
                walk(item, sub)

    if root is not None:
        walk(root, "")
    return out


def _plain(value: float) -> float | int:
    # Written as 450 rather than 450.0 so a saved file reads like a hand-written one; the loader
    # turns it back into the same float.
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def dump_catalogue(catalogue: Catalogue) -> str:
    """The catalogue as YAML text, in the shipped field order; each entry holds only the fields it
    states (`LLM.written`), so a figure left to its default stays a default."""
    import yaml

    entries = []
    for llm in catalogue.llms:
        entry = llm.written()
        for key in ("input_usd_per_mtok", "output_usd_per_mtok", "ttft_ms", "output_tokens_per_s"):
            if key in entry:
                entry[key] = _plain(entry[key])
        entries.append(entry)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    body = yaml.dump(
        {"version": CATALOGUE_VERSION, "llms": entries},
        Dumper=dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return "# mixllm LLM catalogue; units are in the field names.\n" + body


def save_catalogue(catalogue: Catalogue, path: str | os.PathLike[str]) -> None:
    """Write the catalogue atomically; the result loads back to an equal Catalogue."""
    text = dump_catalogue(catalogue)
    try:
        atomic_write_bytes(Path(path), text.encode("utf-8"))
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot write: {exc.strerror or exc}") from None
