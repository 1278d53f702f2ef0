"""The Python API: load a router once, route queries, send feedback, evaluate labelled data.

The public face is the `mixllm` package (`import mixllm`), which re-exports these names lazily;
this module holds the code so that it sits in the layer table (layer 7, beside `serve`: a client
of the library, importing anything below it, imported by nothing of ours).

    import mixllm

    with mixllm.load() as router:                        # the default home ($MIXLLM_HOME, ...)
        d = router.route("Write a haiku about rain", budget="low")
        print(d.choice, d.decision_id)
        router.feedback(d, quality=0.9, response_tokens=40, latency_ms=1800)

What the CLI checks, this checks the same way (the checks live in the library below), with one
difference that suits Python: a value of the wrong *type* (bytes for a query, a str for λ, a set
of queries) raises `TypeError`; a value of the right type that is wrong (an unknown budget, an
empty query, quality 2) raises the library's `MixLLMError` kind (`UsageError`, `DataError`,
`FeedbackError`, ...). Nothing heavy (numpy, onnxruntime) is imported before it is needed.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

from .errors import DataError, FeedbackError, UsageError

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

    from .asking import Answer
    from .dataset import Record
    from .learning.feedback import FeedbackResult
    from .routing.results import Decision
    from .routing.router import Router as Engine
    from .state.base import StoreBase

__all__ = ["Router", "evaluate", "load"]

#: Queries encoded together when `route` is given a long list (bounds the memory one call takes;
#: the queue sees every chunk's admissions in order, as with one batch).
CHUNK = 256

PathLike = str | os.PathLike[str]


def _type_name(value: object) -> str:
    return type(value).__name__


def _optional_path(value: object, name: str) -> Path | None:
    """None, or a str / os.PathLike naming a file or folder, as a Path (an empty str is None, as
    the library reads it; bytes paths are refused)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if isinstance(text, str):
            return Path(text) if text else None
    raise TypeError(f"{name} must be a str or pathlib.Path, or None (got {_type_name(value)})")


def _optional_number(value: object, name: str) -> float | None:
    """None, or a real number (bool is not one); checked for being finite and >= 0 by the caller."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, or None (got {_type_name(value)})")
    return value  # type: ignore[return-value]  # a Real: float() happens where the library checks it


def _max_wait(value: object) -> float | None:
    """The waiting tolerance τ in seconds: None (the default) or a finite number >= 0."""
    number = _optional_number(value, "max_wait_s")
    if number is None:
        return None
    try:
        seconds = float(number)
    except OverflowError:
        seconds = math.inf
    if not 0 <= seconds < math.inf:
        raise UsageError(f"must be a finite number of seconds >= 0 (got {value!r})", param="max_wait_s")
    return seconds


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False (got {_type_name(value)})")
    return value


def _queries(queries: object) -> tuple[list[str], bool]:
    """The queries as a list, and whether one query (a str) was given: a str is one query, never
    its characters."""
    if isinstance(queries, str):
        return [queries], True
    if isinstance(queries, (bytes, bytearray, memoryview)):
        raise TypeError(f"route() takes a str or a list of str, not {_type_name(queries)}; "
                        "decode it first, e.g. data.decode('utf-8')")
    if not isinstance(queries, (list, tuple)):
        raise TypeError(f"route() takes one query (a str) or a list or tuple of str, not {_type_name(queries)}"
                        + ("; pass list(...) of it" if isinstance(queries, Iterable)
                           and not isinstance(queries, (Mapping, set, frozenset)) else ""))
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise TypeError(f"queries[{i}] must be a str (got {_type_name(q)})")
    return list(queries), False


class Router:
    """A loaded router: the catalogue, the trained artifact set, the online model and the state
    store of one home, loaded once and used for many queries.

    Get one with `Router.load()` (or `mixllm.load()`). Routing records each decision in the
    home's state store (the queue of each LLM, and the log that feedback refers to), exactly as
    `mixllm route` does, so a CLI, a server and this API sharing a home see one another's load.

    A `Router` may be shared by threads: calls are serialised, and each thread gets its own
    connection to the store. Use it as a context manager, or call `close()`, to release the store.
    """

    def __init__(self, engine: Engine, home: Path | None = None, store: str | None = None) -> None:
        """Wrap an internal router; use `Router.load` instead of calling this."""
        from .paths import home_dir

        self._engine = engine
        self.home: Path = home_dir(home)
        """The home folder this router reads and writes (`home`, else `$MIXLLM_HOME` when it was
        loaded, else the platform's user data folder)."""
        self._store_url = store
        self._lock = threading.RLock()
        self._local = threading.local()

    @classmethod
    def load(cls, home: PathLike | None = None, catalogue: PathLike | None = None, *,
             store: str | None = None) -> Router:
        """Load the router of a home.

        `home`: the folder `mixllm train-offline` / `add-llm` wrote (default: `$MIXLLM_HOME`, else
        the platform's user data folder, e.g. `~/.local/share/mixllm`; a home without a trained set
        uses the shipped one). `catalogue`: a `models.yaml` to use instead of the home's (or the
        shipped) one. `store`: a state-store URL (`postgresql://...` or `sqlite:///PATH`; default
        `$MIXLLM_STORE`, else the home's `state.sqlite3`).

        Raises `ArtifactError` (no trained set, or a damaged one), `CatalogueError` (a bad
        `models.yaml`), `StoreError` (the store cannot be opened), `TypeError` (an argument of the
        wrong type).
        """
        home = _optional_path(home, "home")
        catalogue = _optional_path(catalogue, "catalogue")
        if store is not None and not isinstance(store, str):
            raise TypeError(f"store must be a URL str, or None (got {_type_name(store)})")
        from .paths import home_dir
        from .routing.router import Router as Engine
        from .state import open_store

        home = home_dir(home)  # pinned now: a later change of $MIXLLM_HOME does not move this router
        state = open_store(home, store)
        engine = Engine.load(home, catalogue, store=state)
        router = cls(engine, home, store)
        router._local.store = state
        return router

    # ------------------------------------------------------------------ what it holds

    @property
    def llms(self) -> tuple[str, ...]:
        """The ids of the LLMs this router routes to (catalogue LLMs with trained heads, or cold)."""
        return self._engine.llm_ids

    @property
    def budgets(self) -> dict[str, float]:
        """The budget presets, name → λ (e.g. `{"very-low": ..., "low": ..., "medium": ..., "high": ...}`)."""
        return {name: p.lam for name, p in self._engine.artifacts.presets.items()}

    def _store(self) -> StoreBase:
        """This thread's connection to the state store (SQLite connections stay in their thread)."""
        store: StoreBase | None = getattr(self._local, "store", None)
        if store is None:
            from .state import open_store

            store = open_store(self.home, self._store_url)
            self._local.store = store
        return store

    def close(self) -> None:
        """Close this thread's connection to the state store (the next call opens it again)."""
        store: StoreBase | None = getattr(self._local, "store", None)
        if store is not None:
            store.close()
            self._local.store = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<mixllm.Router home={str(self.home)!r} llms={list(self.llms)!r}>"

    # ------------------------------------------------------------------ routing

    @overload
    def route(self, queries: str, budget: str | None = ..., *, lam: float | None = ...,
              max_wait_s: float | None = ..., strict_wait: bool = ..., exclude: Iterable[str] | None = ...,
              record: bool = ..., log_queries: bool = ...) -> Decision: ...

    @overload
    def route(self, queries: list[str] | tuple[str, ...], budget: str | None = ..., *, lam: float | None = ...,
              max_wait_s: float | None = ..., strict_wait: bool = ..., exclude: Iterable[str] | None = ...,
              record: bool = ..., log_queries: bool = ...) -> list[Decision]: ...

    def route(self, queries: str | list[str] | tuple[str, ...], budget: str | None = None, *,
              lam: float | None = None, max_wait_s: float | None = None, strict_wait: bool = False,
              exclude: Iterable[str] | None = None, record: bool = True,
              log_queries: bool = False) -> Decision | list[Decision]:
        """Pick the LLM for one query (a str: returns one `Decision`) or for each of a list or tuple
        of queries (returns a list of `Decision`, in order). A str is always one query.

        `budget`: a preset name (`"very-low"`, `"low"`, `"medium"` (the default), `"high"`; see
        `budgets`), or give `lam` itself (not both): λ >= 0 weighs quality against cost (0: the
        cheapest; the larger, the better and dearer; a quality gain Δp is worth λ·Δp typical calls
        to the dearest LLM). `max_wait_s`: the
        waiting tolerance τ (default `$MIXLLM_MAX_WAIT_S`, else 30 s); `strict_wait=True` never
        picks an LLM whose expected wait exceeds it when another meets it. `exclude`: LLM ids not to
        offer (e.g. one whose endpoint just failed). `record=False` is a dry run: the queue is
        ignored (every wait 0), nothing is stored, and the decision has no `decision_id` (so no
        feedback). `log_queries=True` stores the query text with the decision (for
        `mixllm export-prompts`); by default only its hash is stored.

        Raises `TypeError` for arguments of the wrong type (bytes, a set, a number as a query);
        `DataError` for a query that cannot be routed (empty, over 100,000 characters);
        `UsageError` for an unknown budget, a negative λ, both budget and λ, or an unknown LLM in
        `exclude`; `StoreError` when the state store fails.
        """
        texts, single = _queries(queries)
        if budget is not None and not isinstance(budget, str):
            raise TypeError(f"budget must be a preset name str such as 'low', or None (got {_type_name(budget)})")
        lam = _optional_number(lam, "lam")
        policy_wait = _max_wait(max_wait_s)
        strict = _flag(strict_wait, "strict_wait")
        dry = not _flag(record, "record")
        log = _flag(log_queries, "log_queries")
        excluded = self._exclude(exclude)
        from .routing.request import RouteRequest, WaitPolicy

        policy = WaitPolicy.default(policy_wait, strict=strict)
        with self._lock:
            # Checked once up front so an empty list still reports a bad budget.
            self._engine.resolve_budget(budget, lam)
            state = None if dry else self._store()
            out: list[Decision] = []
            for start in range(0, len(texts), CHUNK):
                requests = [RouteRequest(query=q, budget=budget, lam=lam, policy=policy, exclude=excluded)
                            for q in texts[start:start + CHUNK]]
                out += self._engine.route_batch(requests, state=state, log_queries=log)
        return out[0] if single else out

    def _exclude(self, exclude: object) -> frozenset[str]:
        if exclude is None:
            return frozenset()
        if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Iterable):
            raise TypeError(f"exclude must be a list or set of LLM ids (got {_type_name(exclude)}); "
                            "for one LLM: exclude=['its-id']")
        ids = list(exclude)
        for llm in ids:
            if not isinstance(llm, str):
                raise TypeError(f"exclude must hold LLM id strs (got {_type_name(llm)})")
        unknown = [llm for llm in ids if llm not in self.llms]
        if unknown:
            raise UsageError(f"unknown LLM {unknown[0]!r}; the pool: {', '.join(self.llms)}", param="exclude")
        out = frozenset(ids)
        if all(llm in out for llm in self.llms if llm not in self._engine.cold_ids):
            raise UsageError("leaves no trained LLM to route to", param="exclude")
        return out

    # ------------------------------------------------------------------ asking

    def ask(self, query: str, budget: str | None = None, *, lam: float | None = None, max_tokens: int = 1024,
            timeout_s: float = 300.0, on_delta: Callable[[str], None] | None = None,
            log_queries: bool = False) -> Answer:
        """Route one query and get the chosen LLM's answer from its endpoint (`mixllm ask`).

        Routed and recorded as `route` records it; then the chosen LLM's `base_url` is called (its key
        from the environment variable `api_key_env` names) with a streamed chat completion of
        `query` as the one user message, at most `max_tokens` tokens; `on_delta` gets each piece of
        text as it arrives. When the endpoint fails before its first token (unreachable, its key
        unset or refused, 408/409/429/5xx), that decision's slot is freed and the next choice is
        asked, at most 2 more times. The call's real usage, latency and cost are recorded as the
        decision's feedback (as `mixllm serve` does); add your verdict with `feedback(answer.decision,
        good=True)`.

        Returns an `Answer`: `text`, `llm`, `decision` (the one that answered), `usage`, `cost_usd`,
        `latency_ms`, `ttft_ms`, `fallback_from`, and `to_dict()` (what `mixllm ask --json` prints).
        Raises `UpstreamError` when no LLM of the pool has an endpoint (nothing is recorded), when
        none answered, or when the answer broke off after its first token; the errors of `route`
        for a bad query, budget or λ; `UsageError` for `max_tokens` outside 1..32768 or `timeout_s`
        outside (0, 3600]; `TypeError` for arguments of the wrong type.
        """
        if not isinstance(query, str):
            raise TypeError(f"ask() takes one query, a str (got {_type_name(query)})")
        if budget is not None and not isinstance(budget, str):
            raise TypeError(f"budget must be a preset name str such as 'low', or None (got {_type_name(budget)})")
        lam = _optional_number(lam, "lam")
        if _optional_number(timeout_s, "timeout_s") is None:
            raise TypeError("timeout_s must be a number of seconds (got NoneType)")
        if on_delta is not None and not callable(on_delta):
            raise TypeError(f"on_delta must be a function of one str, or None (got {_type_name(on_delta)})")
        log = _flag(log_queries, "log_queries")
        from .asking import ask, check_max_tokens, check_timeout

        if isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral):
            raise TypeError(f"max_tokens must be an int (got {_type_name(max_tokens)})")
        check_max_tokens(int(max_tokens))
        timeout = check_timeout(timeout_s)
        with self._lock:
            store = self._store()
            answer = ask(self._engine, store, self.home, query, budget=budget, lam=lam, max_tokens=int(max_tokens),
                         timeout_s=timeout, on_delta=on_delta,
                         log_queries=log)
            self._refresh(store)
        return answer

    # ------------------------------------------------------------------ feedback

    def feedback(self, decision: Decision | str, *, quality: float | None = None, good: bool | None = None,
                 response_tokens: int | None = None, latency_ms: float | None = None,
                 ttft_ms: float | None = None, cost_usd: float | None = None) -> FeedbackResult:
        """Tell the router how a routed call went; it learns from it (`mixllm feedback`).

        `decision`: the `Decision` that `route` returned, or its `decision_id`. Refined feedback:
        `quality` in [0, 1] (with `response_tokens`, `latency_ms`, `ttft_ms`, `cost_usd` as
        observed); binary: `good=True` / `good=False`; not both. A latency alone frees the call's
        queue slot and teaches the latency model. The same feedback sent twice counts once (its
        result's status is then `"duplicate"`). The router serves what it learned from the next
        `route` on.

        Returns a `FeedbackResult` (`status` "recorded" or "duplicate", `id`, `llm`, `kind`).
        Raises `UsageError` for both quality and good; `FeedbackError` for values out of range,
        nothing to record, or a decision of a dry run; `UnknownDecisionError` (a `FeedbackError`) for an id the store
        does not hold; `TypeError` for arguments of the wrong type.
        """
        did = self._decision_id(decision)
        for name, value in (("quality", quality), ("latency_ms", latency_ms), ("ttft_ms", ttft_ms),
                            ("cost_usd", cost_usd)):
            _optional_number(value, name)
        if response_tokens is not None and (isinstance(response_tokens, bool)
                                            or not isinstance(response_tokens, numbers.Integral)):
            raise TypeError(f"response_tokens must be an int, or None (got {_type_name(response_tokens)})")
        if good is not None:
            _flag(good, "good")
            if quality is not None:  # as the CLI's --quality with --good: conflicting arguments
                raise UsageError("refined (quality) or binary (good) feedback, not both", param=("quality", "good"))
        from .learning.feedback import parse_feedback, record_feedback

        given = {"id": did, "quality": quality, "good": good, "response_tokens": response_tokens,
                 "latency_ms": latency_ms, "ttft_ms": ttft_ms, "cost_usd": cost_usd}
        fb = parse_feedback({k: v for k, v in given.items() if v is not None}, "feedback")
        with self._lock:
            store = self._store()
            (result,) = record_feedback(self._engine, store, [("feedback", fb)], self.home)
            if result.error is not None:
                raise type(result.error)(str(result.error).removeprefix("feedback: "))
            if result.status == "recorded":
                self._refresh(store)
        return result

    @staticmethod
    def _decision_id(decision: object) -> str:
        from .routing.results import Decision

        if isinstance(decision, Decision):
            if decision.decision_id is None:
                raise FeedbackError("this decision was not recorded (routed with record=False): "
                                    "there is nothing to give feedback on")
            return decision.decision_id
        if isinstance(decision, str):
            return decision
        raise TypeError(f"feedback() takes a Decision or its decision_id str (got {_type_name(decision)})")

    def _refresh(self, store: StoreBase) -> None:
        """Serve what the feedback log has taught (the snapshot `record_feedback` just wrote)."""
        from .learning.online import load_snapshot

        model = load_snapshot(self.home, self._engine.offline_artifacts, store)
        if model is not None:
            self._engine.use_online(model)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, data: PathLike | Sequence[Mapping[str, Any]], *, rate: float | str | None = None,
                 max_wait_s: float | None = None, penalty: bool = True, strict_wait: bool = False,
                 cache: bool = True) -> dict[str, Any]:
        """Replay a labelled routing dataset with this router (`mixllm evaluate`): each budget
        preset beside always-the-best LLM, always-the-cheapest and the oracle.

        `data`: a JSONL file (a str or `pathlib.Path`; a str is always a path) or a list of dicts
        in the dataset format (`{"id", "query", "outcomes": {llm: {"quality", "prompt_tokens",
        "response_tokens", "cost_usd"}}}`). Nothing is recorded in the state store.

        With `rate` (queries per second, a number or a str like `"10/s"`, `"600/min"`), or an
        `arrival_s` on every record, the data is replayed as a stream on a simulated clock: an
        answer that waited longer than `max_wait_s` (default `$MIXLLM_MAX_WAIT_S`, else 30 s) scores 0; `penalty=False` drops
        the waiting-time penalty, `strict_wait=True` applies the hard waiting rule. `cache=False`
        does not read or write the home's embedding cache.

        Returns the report `mixllm evaluate --json` prints: `rows`, `best_llm` and `results`, one
        dict per policy with `policy`, `mean_quality`, `total_cost_usd`, `quality_pct_of_best`,
        `cost_pct_of_best` and `picks` (LLM id → how many queries); plus
        `rows_with_missing_quality` (at once) or `late`, `wait_p95_s` per policy and the stream's
        settings (stream). Keys the format does not know are ignored with a `UserWarning`.

        Raises `DataError` for a malformed dataset (every problem, one per line, naming the file
        and line or the record's index) or one without an outcome of every pool LLM;
        `UsageError` for a bad rate or tolerance; `TypeError` for arguments of the wrong type.
        """
        rate_per_s = _rate(rate)
        tolerance = _max_wait(max_wait_s)
        penalty = _flag(penalty, "penalty")
        strict = _flag(strict_wait, "strict_wait")
        use_cache = _flag(cache, "cache")
        records = _records(data)
        if not records:
            raise DataError(f"{_data_name(data)}: holds no records to evaluate")
        from .embcache import cache_dir
        from .evaluation.replay import evaluate as replay
        from .evaluation.replay import evaluate_stream
        from .routing.request import default_tolerance

        folder = cache_dir(self.home) if use_cache else None
        with self._lock:
            if rate_per_s is not None or all(r.arrival_s is not None for r in records):
                return evaluate_stream(self._engine, records, rate_per_s=rate_per_s,
                                       tolerance_s=default_tolerance(tolerance), penalty=penalty, strict=strict,
                                       cache=folder)
            return replay(self._engine, records, cache=folder)


def _rate(rate: object) -> float | None:
    """Queries per second: None, a number > 0, or a str such as '10/s' (`mixllm evaluate --rate`)."""
    if rate is None:
        return None
    if isinstance(rate, str):
        from .evaluation.replay import parse_rate

        return parse_rate(rate)
    number = _optional_number(rate, "rate")
    try:
        value = float(number)  # type: ignore[arg-type]  # a Real
    except OverflowError:
        value = math.inf
    if not 0 < value < math.inf:
        raise UsageError(f"must be a finite number of queries per second > 0 (got {rate!r})", param="rate")
    return value


def _data_name(data: object) -> str:
    return str(data) if isinstance(data, (str, os.PathLike)) else "records"


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=4)


def _records(data: object) -> list[Record]:
    """A dataset file (str / PathLike) or a list or tuple of dicts, as validated records."""
    from .dataset import read_dataset, record_from_dict

    if isinstance(data, (str, os.PathLike)) and not isinstance(data, bytes):
        return read_dataset(os.fspath(data), warn=_warn)
    if not isinstance(data, (list, tuple)):
        raise TypeError(f"evaluate() takes a dataset path (str or pathlib.Path) or a list of record dicts, "
                        f"not {_type_name(data)}")
    records: list[Record] = []
    problems: list[str] = []
    first: dict[str, int] = {}
    for i, obj in enumerate(data):
        if not isinstance(obj, Mapping):
            raise TypeError(f"records[{i}] must be a dict (got {_type_name(obj)})")
        try:
            record = record_from_dict(obj, f"records[{i}]", warn=_warn)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if record.id in first:
            problems.append(f"records[{i}]: id: duplicate id {record.id!r} (first at records[{first[record.id]}])")
            continue
        first[record.id] = i
        records.append(record)
    if problems:
        from .dataset import MAX_PROBLEMS

        lines = "\n".join(problems).splitlines()
        shown = lines[:MAX_PROBLEMS] + ([f"records: ... and {len(lines) - MAX_PROBLEMS} more problems"]
                                        if len(lines) > MAX_PROBLEMS else [])
        raise DataError("\n".join(shown))
    return records


def load(home: PathLike | None = None, catalogue: PathLike | None = None, *, store: str | None = None) -> Router:
    """Load the router of a home: the same as `Router.load` (see there)."""
    return Router.load(home, catalogue, store=store)


def evaluate(data: PathLike | Sequence[Mapping[str, Any]], *, home: PathLike | None = None,
             catalogue: PathLike | None = None, rate: float | str | None = None, max_wait_s: float | None = None,
             penalty: bool = True, strict_wait: bool = False, cache: bool = True) -> dict[str, Any]:
    """Replay a labelled dataset with the router of `home` (`mixllm evaluate DATA --json`).

    Loads the router (`Router.load(home, catalogue)`) and returns `Router.evaluate(data, ...)`'s
    report; see there for the arguments, the report's keys and the errors. Nothing is recorded.
    """
    if not isinstance(data, (str, os.PathLike, list, tuple)):
        _records(data)  # the TypeError, before anything is loaded
    from .paths import home_dir
    from .routing.router import Router as Engine

    home_path = home_dir(_optional_path(home, "home"))
    engine = Engine.load(home_path, _optional_path(catalogue, "catalogue"))
    return Router(engine, home_path).evaluate(data, rate=rate, max_wait_s=max_wait_s, penalty=penalty,
                                              strict_wait=strict_wait, cache=cache)
