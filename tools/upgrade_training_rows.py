"""Rewrite an artifact set's training rows in the current format: float32 vectors, each row's
query sha256 and the encoder identity, so the set seeds a home's embedding cache (embcache).

    python tools/upgrade_training_rows.py artifacts data/routerbench/train.jsonl

The data file must be the one the set was trained on (its sha256 is checked against the
manifest). Its queries are encoded again with the set's encoder; the token ids must equal the
stored ones and the vectors the stored float16 ones within float16 rounding (2e-4): only then are
the new rows written (atomically) and the manifest's entry for them updated. Heads are not touched.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mixllm_cli.artifacts import load_artifact_set
from mixllm_cli.core.encoder import Encoder, encode_in_chunks
from mixllm_cli.dataset import read_dataset
from mixllm_cli.embcache import encoder_identity, text_sha256
from mixllm_cli.files import sha256_file
from mixllm_cli.manifest import Manifest, RowsFile
from mixllm_cli.training_rows import load_training_rows, save_training_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set_dir", type=Path)
    ap.add_argument("data", type=Path)
    args = ap.parse_args()
    manifest = Manifest.read(args.set_dir)
    if manifest.training_rows is None or manifest.training_data is None:
        sys.exit("the set keeps no training rows")
    if sha256_file(args.data) != manifest.training_data.sha256:
        sys.exit(f"{args.data} is not the data the set was trained on (sha256 differs from the manifest's)")
    rows_path = manifest.training_rows.verify(args.set_dir)
    rows = load_training_rows(rows_path)
    queries = [r.query for r in read_dataset(args.data)]
    if len(queries) != len(rows.embeddings):
        sys.exit(f"{len(queries)} queries for {len(rows.embeddings)} rows")
    encoder_dir = load_artifact_set(args.set_dir, llm_ids=[]).encoder_dir
    enc = encode_in_chunks(Encoder.from_dir(encoder_dir).encode, queries,
                           lambda stage, done, total: print(f"\r{stage} {done}/{total}", end="", file=sys.stderr))
    print(file=sys.stderr)
    if any(not np.array_equal(a, b) for a, b in zip(enc.token_ids, rows.token_ids)):
        sys.exit("token ids differ from the stored rows: not the same tokenizer or data")
    worst = float(np.abs(enc.embeddings - rows.embeddings).max())
    if worst > 2e-4:  # float16 keeps ~3 digits; another CPU's kernels move fp32 results by ~1e-6
        sys.exit(f"vectors differ from the stored ones beyond float16 rounding (max |diff| {worst:.2e})")
    print(f"max |fresh - stored float16| = {worst:.2e}", file=sys.stderr)
    new = replace(rows, embeddings=enc.embeddings, query_sha256=[text_sha256(q) for q in queries],
                  encoder=encoder_identity(encoder_dir))
    save_training_rows(rows_path, new)
    entry = RowsFile.of(args.set_dir, manifest.training_rows.file, llms=manifest.training_rows.llms)
    replace(manifest, training_rows=entry).write(args.set_dir)
    print(f"{rows_path}: {len(queries)} rows, float32 with query sha256s; sha256 {entry.sha256}")


if __name__ == "__main__":
    main()
