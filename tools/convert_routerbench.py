"""Convert the RouterBench CSV subset into mixllm's routing-dataset format (JSONL).

    python tools/convert_routerbench.py [--source ../shared/data/routerbench] [--out data/routerbench]
        [--tokenizer artifacts/encoder/tokenizer.json] [--catalogue models.yaml]

Writes `train.jsonl`, `test.jsonl` and a `README.md` (provenance, the rule, sha256s) into --out.
Re-running on the same inputs gives identical bytes.

RouterBench stores the real cost of every call but no token counts. They are rebuilt so that
`prompt_tokens * input price + response_tokens * output price` reproduces the cost exactly:
- equal input and output prices (the six open models): cost * 1e6 / price is the exact total T
  of prompt + response tokens; the prompt gets min(p_est, T) of them;
- different prices: prompt_tokens is the integer p closest to p_est (ties: lower) for which the
  response tokens (cost * 1e6 - p * in) / out come out a non-negative integer.
p_est is the query's token count under the MiniLM WordPiece tokenizer of the encoder: the only
tokenizer we ship, so an estimate, not the LLMs' own counts.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import math
import shlex
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "routerbench"
DEFAULT_OUT = REPO / "data" / "routerbench"
DEFAULT_TOKENIZER = REPO / "artifacts" / "encoder" / "tokenizer.json"
DEFAULT_CATALOGUE = REPO / "models.yaml"

SPLITS = ("train", "test")
# Columns of the CSV that are not one LLM's quality.
NON_LLM_COLUMNS = {"", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"}
# Prices have at most one decimal in USD per 1M tokens, so costs are whole tenths of a
# micro-dollar: working in those units makes the token equation exact integer arithmetic.
PRICE_SCALE = 10
INTEGRAL_TOL = 1e-6


class ConversionError(Exception):
    """The source data does not convert as expected; the message says where."""


@dataclass(frozen=True)
class Reconstruction:
    prompt_tokens: int
    response_tokens: int
    clamped: bool  # p_est did not fit under the cost, so the prompt got fewer tokens than estimated


def _integral(value: float, what: str) -> int:
    n = round(value)
    if abs(value - n) > INTEGRAL_TOL:
        raise ConversionError(f"{what} is not an integer (got {value!r})")
    return n


def reconstruct_tokens(
    cost_usd: float, input_usd_per_mtok: float, output_usd_per_mtok: float, p_est: int
) -> Reconstruction:
    """Prompt and response token counts that reproduce `cost_usd` exactly, prompt near p_est."""
    if p_est < 0:
        raise ConversionError(f"negative prompt estimate {p_est}")
    if input_usd_per_mtok == output_usd_per_mtok:
        total = _integral(
            cost_usd * 1e6 / input_usd_per_mtok, f"cost {cost_usd!r} / price {input_usd_per_mtok!r} per 1M tokens"
        )
        if total < 0:
            raise ConversionError(f"negative cost {cost_usd!r}")
        p = min(p_est, total)
        return Reconstruction(p, total - p, p_est > total)

    a = _integral(input_usd_per_mtok * PRICE_SCALE, f"input price {input_usd_per_mtok!r} x {PRICE_SCALE}")
    b = _integral(output_usd_per_mtok * PRICE_SCALE, f"output price {output_usd_per_mtok!r} x {PRICE_SCALE}")
    c = _integral(cost_usd * 1e6 * PRICE_SCALE, f"cost {cost_usd!r} in 1e-7 USD")
    what = f"cost {cost_usd!r} at prices {input_usd_per_mtok!r}/{output_usd_per_mtok!r}"
    if a <= 0 or b <= 0 or c < 0:
        raise ConversionError(f"cannot split {what}")
    # a*p + b*r = c has integer solutions only if gcd(a, b) divides c; then p runs through one
    # residue class modulo b/g, and r >= 0 caps p at c // a.
    g = math.gcd(a, b)
    if c % g:
        raise ConversionError(f"no integer token split gives {what}")
    a, b, c = a // g, b // g, c // g
    p0 = (c * pow(a, -1, b)) % b if b > 1 else 0
    p_max = c // a
    if p0 > p_max:
        raise ConversionError(f"no non-negative token split gives {what}")
    p_top = p0 + (p_max - p0) // b * b  # largest feasible p
    below = p0 + max(0, (p_est - p0) // b) * b
    candidates = {min(below, p_top), min(below + b, p_top)}
    # closest to p_est, ties to the lower
    p = min(candidates, key=lambda x: (abs(x - p_est), x))
    r = (c - a * p) // b
    # "clamped" = the cap r >= 0, not the residue class, moved p away from p_est
    unclamped = min((below, below + b), key=lambda x: (abs(x - p_est), x))
    return Reconstruction(p, r, unclamped > p_top)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRow:
    file: str
    index: int  # the row's index in the original RouterBench pickle
    sample_id: str
    task: str
    query: str
    n_prompt_parts: int
    quality: dict[str, float | None]
    cost: dict[str, float]


@dataclass
class Summary:
    rows: dict[str, int] = field(default_factory=dict)
    null_quality: dict[str, int] = field(default_factory=dict)
    multi_part_prompts: int = 0
    renamed_ids: list[str] = field(default_factory=list)
    cross_split_ids: int = 0  # sample_ids that occur in both train and test
    mean_abs_dev: dict[str, float] = field(default_factory=dict)
    clamped: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (bytes, sha256)

    def lines(self) -> list[str]:
        out = [f"rows: {', '.join(f'{s} {n}' for s, n in self.rows.items())}"]
        out.append(
            "outcomes with null quality: "
            + ", ".join(f"{s} {n}" for s, n in self.null_quality.items())
            + f" (total {sum(self.null_quality.values())})"
        )
        out.append(f"prompts with more than one part (joined with newlines): {self.multi_part_prompts}")
        out.append(
            f"duplicated sample_ids given a '#<row index>' suffix: {len(self.renamed_ids)} rows "
            f"({self.cross_split_ids} sample_ids occur in both train and test)"
        )
        out.append("per LLM: mean |prompt_tokens - p_est|, rows with prompt clamped below p_est")
        width = max(len(k) for k in self.mean_abs_dev)
        for llm in sorted(self.mean_abs_dev):
            out.append(f"  {llm:<{width}}  {self.mean_abs_dev[llm]:8.2f}  {self.clamped[llm]:5d}")
        for name, (size, digest) in self.outputs.items():
            out.append(f"wrote {name}: {size} bytes, sha256 {digest}")
        return out


def _read_split(path: Path, llms_out: list[str]) -> list[SourceRow]:
    rows: list[SourceRow] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        llms = [c for c in cols if "|" not in c and c not in NON_LLM_COLUMNS]
        for llm in llms:
            if f"{llm}|total_cost" not in cols:
                raise ConversionError(f"{path.name}: no '{llm}|total_cost' column")
        if not llms_out:
            llms_out.extend(llms)
        elif sorted(llms_out) != sorted(llms):
            raise ConversionError(f"{path.name}: its LLM columns differ from the other files'")
        for n, row in enumerate(reader, start=2):
            at = f"{path.name}:{n}"
            try:
                parts = ast.literal_eval(row["prompt"])  # never eval: this is data
            except (ValueError, SyntaxError) as exc:
                raise ConversionError(f"{at}: prompt is not a Python literal: {exc}") from None
            if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
                raise ConversionError(f"{at}: prompt is not a non-empty list of strings")
            quality: dict[str, float | None] = {}
            cost: dict[str, float] = {}
            for llm in llms:
                cell = row[llm].strip()
                if cell == "" or cell.lower() == "nan":
                    quality[llm] = None
                else:
                    q = float(cell)
                    if not 0.0 <= q <= 1.0:
                        raise ConversionError(f"{at}: {llm}: quality {cell!r} outside [0, 1]")
                    quality[llm] = q
                c = float(row[f"{llm}|total_cost"])
                if not (math.isfinite(c) and c >= 0):
                    raise ConversionError(f"{at}: {llm}|total_cost: bad cost {c!r}")
                cost[llm] = c
            rows.append(
                SourceRow(
                    file=path.name,
                    index=int(row[""]),
                    sample_id=row["sample_id"],
                    task=row["eval_name"],
                    query="\n".join(parts),
                    n_prompt_parts=len(parts),
                    quality=quality,
                    cost=cost,
                )
            )
    return rows


def _count_tokens(queries: list[str], tokenizer_path: Path) -> dict[str, int]:
    from tokenizers import Tokenizer  # heavy, and only this tool needs it

    if not tokenizer_path.is_file():
        raise ConversionError(f"{tokenizer_path}: no such tokenizer file (pass --tokenizer)")
    tok = Tokenizer.from_file(str(tokenizer_path))
    # The encoder truncates at 256 tokens for embedding; the cost estimate needs the whole prompt.
    tok.no_truncation()
    tok.no_padding()
    unique = sorted(set(queries))
    encodings = tok.encode_batch(unique, add_special_tokens=False)
    return {q: len(e.ids) for q, e in zip(unique, encodings, strict=True)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert(source: Path, out: Path, tokenizer: Path, catalogue_path: Path) -> Summary:
    """Convert the CSVs under `source` into `out`/{train,test}.jsonl; return what was done."""
    sys.path.insert(0, str(REPO))
    from mixllm_cli.catalogue import load_catalogue
    from mixllm_cli.dataset import Outcome, Record, write_dataset

    catalogue = load_catalogue(catalogue_path)
    llms: list[str] = []
    by_split: dict[str, list[SourceRow]] = {}
    for split in SPLITS:
        files = sorted(source.glob(f"*_{split}.csv"))
        if not files:
            raise ConversionError(f"{source}: no *_{split}.csv files")
        rows = [r for f in files for r in _read_split(f, llms)]
        rows.sort(key=lambda r: (r.task, r.index))  # deterministic, independent of file names
        by_split[split] = rows
    for llm in llms:
        if llm not in catalogue:
            raise ConversionError(f"LLM {llm!r} of the data is not in {catalogue_path}")

    # RouterBench reuses some sample_ids for two different rows (the prompt once alone, once
    # doubled); ids must be unique, so both rows of such a pair carry their pickle row index.
    all_rows = [r for split in SPLITS for r in by_split[split]]
    id_count = Counter(r.sample_id for r in all_rows)
    summary = Summary()
    split_ids = [{r.sample_id for r in by_split[split]} for split in SPLITS]
    summary.cross_split_ids = len(set.intersection(*split_ids))

    p_est_of = _count_tokens([r.query for r in all_rows], tokenizer)
    dev: dict[str, list[int]] = defaultdict(list)
    clamped: Counter[str] = Counter()
    for split in SPLITS:
        records = []
        nulls = 0
        for r in by_split[split]:
            rid = r.sample_id
            if id_count[rid] > 1:
                rid = f"{r.sample_id}#{r.index}"
                summary.renamed_ids.append(rid)
            summary.multi_part_prompts += r.n_prompt_parts > 1
            p_est = p_est_of[r.query]
            outcomes = {}
            for llm in llms:
                entry = catalogue.get(llm)
                try:
                    rec = reconstruct_tokens(r.cost[llm], entry.input_usd_per_mtok, entry.output_usd_per_mtok, p_est)
                except ConversionError as exc:
                    raise ConversionError(f"{r.file} row {r.index} ({r.sample_id}), {llm}: {exc}") from None
                dev[llm].append(abs(rec.prompt_tokens - p_est))
                clamped[llm] += rec.clamped
                nulls += r.quality[llm] is None
                outcomes[llm] = Outcome(
                    quality=r.quality[llm],
                    prompt_tokens=rec.prompt_tokens,
                    response_tokens=rec.response_tokens,
                    cost_usd=r.cost[llm],
                )
            records.append(Record(id=rid, query=r.query, task=r.task, tags=(), outcomes=outcomes))
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{split}.jsonl"
        write_dataset(records, path)
        summary.rows[split] = len(records)
        summary.null_quality[split] = nulls
        summary.outputs[path.name] = (path.stat().st_size, _sha256(path))
    summary.mean_abs_dev = {llm: sum(d) / len(d) for llm, d in dev.items()}
    summary.clamped = {llm: clamped[llm] for llm in dev}
    return summary


def _readme(summary: Summary, command: str, tokenizer: Path) -> str:
    files = "\n".join(
        f"| `{name}` | {summary.rows[name.removesuffix('.jsonl')]:,} | {size:,} | `{digest}` |"
        for name, (size, digest) in summary.outputs.items()
    )
    return f"""# RouterBench routing data (3 task sets, 11 LLMs)

`train.jsonl` and `test.jsonl` are the RouterBench subset described below, converted to mixllm's
routing-dataset format (one query per line; see `mixllm_cli/dataset.py`).

## Provenance and licence
RouterBench (Hu et al., 2024, arXiv 2403.12031), dataset `withmartian/routerbench`, file
`routerbench_0shot.pkl`, published under the **MIT licence**; rows re-shipped verbatim as CSV in
`shuhao02/RouterDC` (`datasets/routerbench_zs/`). Three task sets with their original train/test
split: ARC-Challenge, MBPP, Winogrande. Prices per LLM come from `models.yaml` (RouterBench's own
price table, USD per 1M tokens).

## How it was made
```
{command}
```
(run from the repository root; tokenizer sha256 `{_sha256(tokenizer)}`)

- `id` = RouterBench `sample_id`; `task` = `eval_name`; `tags` = []. Rows are ordered by task, then
  by their row index in the RouterBench pickle.
- `query` = the prompt list's strings joined with a newline; {summary.multi_part_prompts} prompts
  have more than one string (in this subset: the same few-shot prompt twice).
- RouterBench gives {len(summary.renamed_ids)} rows a `sample_id` that another row also has (in this
  subset: ARC-Challenge pairs, the prompt alone and the prompt doubled, which are also the only
  rows with missing quality cells). Ids must be unique, so each such row gets the suffix
  `#<pickle row index>`, e.g. `{summary.renamed_ids[0] if summary.renamed_ids else ""}`.
  {summary.cross_split_ids} of these `sample_id`s occur in both train and test: near-duplicate
  queries across the split, kept as RouterBench split them.
- `quality` = the CSV cell (0.0 or 1.0); an empty or `nan` cell becomes `null` (the call was
  made, its cost is known, its quality is not): {sum(summary.null_quality.values())} outcomes.
- `cost_usd` = RouterBench's real `total_cost` of the call.
- Token counts are **reconstructed**, not measured. p_est = the number of tokens of the query
  under the MiniLM WordPiece tokenizer (no special tokens, no truncation).
  - LLMs with equal input and output prices: T = cost_usd * 1e6 / price is an exact integer
    (prompt + response tokens); prompt_tokens = min(p_est, T), response_tokens = T - prompt_tokens.
  - Other LLMs: prompt_tokens = the integer p closest to p_est (ties: the lower) such that
    response_tokens = (cost_usd * 1e6 - p * input price) / output price is a non-negative integer
    (exact integer arithmetic in 1e-7 USD).
  - So `prompt_tokens * input price + response_tokens * output price == cost_usd * 1e6` on every
    outcome; the split between prompt and response is an estimate.

## Files
| file | rows | bytes | sha256 |
|---|---|---|---|
{files}
"""


def _command(argv: list[str]) -> str:
    return " ".join(["python", "tools/convert_routerbench.py", *map(shlex.quote, argv)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of the RouterBench CSVs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for train/test.jsonl")
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER, help="MiniLM tokenizer.json for p_est")
    parser.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE, help="models.yaml with the prices")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from mixllm_cli.errors import MixLLMError

    try:
        summary = convert(args.source, args.out, args.tokenizer, args.catalogue)
        readme = args.out / "README.md"
        readme.write_text(_readme(summary, _command(argv), args.tokenizer), encoding="utf-8")
    except (ConversionError, MixLLMError) as exc:
        for line in str(exc).splitlines():
            print(f"Error: {line}", file=sys.stderr)
        return 1
    for line in summary.lines():
        print(line, file=sys.stderr)
    print(f"wrote {readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
