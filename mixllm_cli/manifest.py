"""The artifact set's manifest: what a set holds, with a sha256 per file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ArtifactError

MANIFEST = "manifest.json"


MANIFEST_FORMAT = 1


def read_manifest(set_dir: Path) -> dict[str, Any]:
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
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ArtifactError(f"{path}: unsupported manifest format (want {MANIFEST_FORMAT})")
    return data
