"""`route --jsonl`: JSONL in, one result per input line out, in order.

Lines are read lazily and routed in batches through `Router.route_batch`, so a large file streams
with bounded memory and a pipeline sees output as each batch completes. A bad line yields an error
object for that line (or, with `strict`, aborts with that line's error). Results go to `emit`
(the CLI writes each as a JSON line); nothing here prints.

A blank line yields `{"id": null, "line": N, "skipped": "blank line"}`, so output line N always
answers input line N (not counted as an error). Keys other than id, query, budget and lambda are ignored, so a prompt file or a routing dataset
routes as it is; `warn` hears once, at the end, which keys were ignored on how many lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import DataError, MixLLMError
from .request import RouteRequest, WaitPolicy

if TYPE_CHECKING:
    from ..state.base import StoreBase
    from .router import Router

ALLOWED_FIELDS = ("id", "query", "budget", "lambda")


def parse_line(obj: object, where: str, default: RouteRequest, ignored: Counter[str] | None = None) -> RouteRequest:
    """One JSONL line as a request; the line's own budget or λ replaces the default's. Other keys
    are counted in `ignored` (the caller warns once)."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: must be a JSON object")
    if ignored is not None and len(obj) > sum(k in obj for k in ALLOWED_FIELDS):
        ignored.update(k for k in obj if k not in ALLOWED_FIELDS)
    qid = obj.get("id")
    if qid is not None and not isinstance(qid, (str, int)):
        raise DataError(f"{where}: id: must be a string or integer")
    query = obj.get("query")
    budget, lam = default.budget, default.lam
    if "budget" in obj or "lambda" in obj:
        budget, lam = obj.get("budget"), obj.get("lambda")
        if budget is not None and not isinstance(budget, str):
            raise DataError(f"{where}: budget: must be a string")
        if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float))):
            raise DataError(f"{where}: lambda: must be a number")
    return RouteRequest(query=query, id=None if qid is None else str(qid), budget=budget,  # type: ignore[arg-type]
                        lam=lam, policy=default.policy)


def route_jsonl(router: Router, source: str, budget: str | None, lam: float | None, *,
                emit: Callable[[dict[str, Any]], None], strict: bool = False, batch_size: int = 64,
                state: StoreBase | None = None, policy: WaitPolicy | None = None, log_queries: bool = False,
                flush: Callable[[], None] = lambda: None, warn: Callable[[str], None] | None = None) -> int:
    """Route every line of `source` ('-' for stdin), emitting one result per line; raise a
    `DataError` naming the count of bad lines at the end (or the first bad line's error if strict).

    With a state store, each batch is admitted to the queue in one transaction, in line order.
    """
    from ..dataset import iter_jsonl, open_source

    default = RouteRequest(query="", budget=budget, lam=lam, policy=policy or WaitPolicy.default())
    router.resolve_budget(budget, lam)  # a bad default is the command's error, before any line
    stream, name, close = open_source(source)
    bad = 0
    ignored: Counter[str] = Counter()
    try:
        batch: list[tuple[int, Any]] = []
        for lineno, item in iter_jsonl(stream, name, blanks=True):
            batch.append((lineno, item))
            if len(batch) >= batch_size:
                bad += _flush(router, batch, name, default, strict, emit, state, log_queries, ignored)
                flush()
                batch = []
        if batch:
            bad += _flush(router, batch, name, default, strict, emit, state, log_queries, ignored)
            flush()
    finally:
        if close:
            stream.close()
    if ignored and warn is not None:
        keys = ", ".join(f"{k[:40]!r} ({n} lines)" for k, n in ignored.most_common(8))
        more = f" and {len(ignored) - 8} more keys" if len(ignored) > 8 else ""
        warn(f"{name}: ignored keys route does not read: {keys}{more}")
    if bad:
        raise DataError(f"{name}: {bad} line(s) could not be routed; see the error objects in the output")
    return bad


def _renderable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _flush(router: Router, batch: list[tuple[int, Any]], name: str, default: RouteRequest, strict: bool,
           emit: Callable[[dict[str, Any]], None], state: StoreBase | None, log_queries: bool,
           ignored: Counter[str]) -> int:
    parsed: list[RouteRequest | dict[str, Any]] = []
    for lineno, item in batch:
        where = f"{name}:{lineno}"
        if item is None:  # a blank line keeps its place in the output, and is not an error
            parsed.append({"id": None, "line": lineno, "skipped": "blank line"})
            continue
        try:
            if isinstance(item, MixLLMError):
                raise item
            request = parse_line(item, where, default, ignored)
            try:
                router.resolve(request)
            except MixLLMError as exc:
                raise DataError(f"{where}: {exc}") from None
            parsed.append(request)
        except MixLLMError as exc:
            if strict:
                raise
            qid = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), (str, int)) else None
            if isinstance(qid, str) and not _renderable(qid):
                qid = None  # a lone surrogate cannot be written out: the error object goes without it
            parsed.append({"id": qid, "line": lineno, "error": str(exc)})
    good = [p for p in parsed if isinstance(p, RouteRequest)]
    decisions = iter(router.route_batch(good, state=state, log_queries=log_queries))
    bad = 0
    for (lineno, _), p in zip(batch, parsed):
        if isinstance(p, dict):
            bad += "error" in p
            emit(p)
        else:
            emit({**next(decisions).to_dict(), "line": lineno})
    return bad
