"""Rebuild the shipped default artifact set in `artifacts/` from the committed training split.

    python tools/build_default.py [--data data/routerbench/train.jsonl] [--tags | --no-tags]

Trains every LLM's heads with the families chosen in docs/HEADS.md, calibrates the presets and
replaces `artifacts/` atomically, keeping the encoder (its files are copied into the new set and
checked against encoder.json). Prints the training report as JSON, including the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mixllm_cli.catalogue import load_catalogue
from mixllm_cli.training.fitters import DEFAULT_FAMILIES
from mixllm_cli.training.pipeline import TAGS_DEFAULT, train_offline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "data/routerbench/train.jsonl"))
    ap.add_argument("--tags", action=argparse.BooleanOptionalAction, default=TAGS_DEFAULT,
                    help="train the tag-enhanced embedding (default: as train-offline, docs/TAGS.md)")
    args = ap.parse_args()
    out = ROOT / "artifacts"
    report = train_offline(Path(args.data), load_catalogue(ROOT / "models.yaml"), out, out / "encoder",
                           families=dict(DEFAULT_FAMILIES), tags=args.tags)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
