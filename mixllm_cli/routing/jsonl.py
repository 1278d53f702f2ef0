"""`route --jsonl`: JSONL in, JSONL out, one output line per input line, in order.

Lines are read lazily and encoded in batches, so a large file streams with bounded memory and a
pipeline sees output as each batch completes. A bad line yields an error object for that line
(or, with `strict`, aborts with that line's error).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ..errors import DataError, MixLLMError
from ..output import json_line
from .router import Router, check_query


def _parse_line(router: Router, obj: Any, where: str, default: tuple[str | None, float]) -> tuple[str | None, str, str | None, float]:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: must be a JSON object")
    unknown = set(obj) - {"id", "query", "budget", "lambda"}
    if unknown:
        raise DataError(f"{where}: {min(unknown)}: unknown field (allowed: id, query, budget, lambda)")
    qid = obj.get("id")
    if qid is not None and not isinstance(qid, (str, int)):
        raise DataError(f"{where}: id: must be a string or integer")
    text = check_query(obj.get("query"), f"{where}: query")
    if "budget" in obj or "lambda" in obj:
        budget, lam = obj.get("budget"), obj.get("lambda")
        if budget is not None and not isinstance(budget, str):
            raise DataError(f"{where}: budget: must be a string")
        if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float))):
            raise DataError(f"{where}: lambda: must be a number")
        try:
            name, value = router.resolve_budget(budget, lam)
        except MixLLMError as exc:
            raise DataError(f"{where}: {exc}") from None
    else:
        name, value = default
    return (None if qid is None else str(qid)), text, name, value


def route_jsonl(router: Router, source: str, budget: str | None, lam: float | None, *, strict: bool = False,
                batch_size: int = 64, out: TextIO | None = None, state: Any = None, policy: Any = None,
                log_queries: bool = False) -> int:
    """Route every line of `source`; return the number of bad lines (raise on the first if strict).

    With a state store, each batch is admitted to the queue in one transaction, in line order.
    """
    from ..dataset import iter_jsonl, open_source

    out = out or sys.stdout
    default = router.resolve_budget(budget, lam)
    stream, name, close = open_source(source)
    bad = 0
    try:
        batch: list[tuple[int, Any]] = []
        for lineno, item in iter_jsonl(stream, name):
            batch.append((lineno, item))
            if len(batch) >= batch_size:
                bad += _flush(router, batch, name, default, strict, out, state, policy, log_queries)
                batch = []
        if batch:
            bad += _flush(router, batch, name, default, strict, out, state, policy, log_queries)
    finally:
        if close:
            stream.close()
    if bad:
        raise DataError(f"{name}: {bad} line(s) could not be routed; see the error objects in the output")
    return bad


def _flush(router: Router, batch: list[tuple[int, Any]], name: str, default: tuple[str | None, float],
           strict: bool, out: TextIO, state: Any = None, policy: Any = None, log_queries: bool = False) -> int:
    parsed: list[Any] = []
    for lineno, item in batch:
        where = f"{name}:{lineno}"
        try:
            if isinstance(item, MixLLMError):
                raise item
            parsed.append(_parse_line(router, item, where, default))
        except MixLLMError as exc:
            if strict:
                raise
            qid = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), (str, int)) else None
            parsed.append({"id": qid, "line": lineno, "error": str(exc)})
    good = [p for p in parsed if isinstance(p, tuple)]
    decisions = iter(())
    if good:
        preds = router.predict([p[1] for p in good])
        decisions = iter(router.decisions(preds, [p[2] for p in good], [p[3] for p in good], [p[0] for p in good],
                                          queries=[p[1] for p in good], state=state, policy=policy,
                                          log_queries=log_queries))
    bad = 0
    for (lineno, _), p in zip(batch, parsed):
        if isinstance(p, dict):
            bad += 1
            json_line(p, out)
        else:
            d = next(decisions).to_dict()
            d["line"] = lineno
            json_line(d, out)
    out.flush()
    return bad
