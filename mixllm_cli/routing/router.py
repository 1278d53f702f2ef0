"""The facade: load an artifact set and a catalogue once, route many queries.

`Router.route_batch` is the one routing path (the CLI, `route --jsonl` and the server call it):
check the requests, encode the batch once and run the heads (`predict`), then decide each query
(`decisions`: the decision rule, and with a state store the queue admission). `Router.decide`
applies the pure rule for any λ to predictions already made, so evaluation sweeps budgets
without encoding again.
"""

from __future__ import annotations

import json
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..artifacts import ArtifactSet, Preset, encoder_cache_dir, load_artifact_set
from ..core import decision
from ..core.features import build_features, pack_lexical
from ..core.heads import HeadBank
from ..core.latency import LatencyEstimate
from ..errors import ArtifactError, UsageError
from ..paths import active_artifacts_dir, home_dir
from ..paths import catalogue_path as store_catalogue_path
from .request import DEFAULT_BUDGET, MAX_QUERY_CHARS, RouteRequest, WaitPolicy, check_id, check_query, explore_keys
from .results import Candidate, Decision, Predictions

if TYPE_CHECKING:
    from ..catalogue import Catalogue
    from ..core.encoder import Encoded, Encoder
    from ..learning.online import OnlineModel
    from ..state.base import StoreBase

__all__ = ["MAX_QUERY_CHARS", "Candidate", "Decision", "Predictions", "RouteRequest", "Router", "WaitPolicy",
           "check_query"]


class Router:
    def __init__(self, artifacts: ArtifactSet, catalogue: Catalogue, weights: decision.Weights | None = None):
        self.artifacts = artifacts
        self.offline_artifacts = artifacts  # as trained, before any online update: what the log replays onto
        self.catalogue = catalogue
        self.weights = weights or decision.Weights()
        self._bank: HeadBank | None = None  # every warm LLM's heads as one evaluator (predict_encoded)
        # The pool: catalogue LLMs that have heads. Heads of LLMs no longer in the catalogue
        # are ignored; catalogue LLMs without heads are reported by `unrouted`.
        servable = set(artifacts.heads) | set(artifacts.cold)
        self.llm_ids = tuple(i for i in catalogue.ids if i in servable)
        self.unrouted = tuple(i for i in catalogue.ids if i not in servable)
        self.cold_ids = tuple(i for i in self.llm_ids if i not in artifacts.heads)
        if not any(i in artifacts.heads for i in self.llm_ids):
            raise ArtifactError(
                f"{artifacts.path}: no trained heads for any LLM of the catalogue; "
                "run `mixllm train-offline DATA.jsonl`"
            )
        llms = [catalogue.get(i) for i in self.llm_ids]
        self._price_in = np.array([m.input_usd_per_mtok for m in llms]) / 1e6
        self._price_out = np.array([m.output_usd_per_mtok for m in llms]) / 1e6
        self._encoder: Encoder | None = None
        self.online: OnlineModel | None = None  # an OnlineModel once feedback has taught something (see `online`)

    @classmethod
    def load(cls, home: Path | str | None = None, catalogue_path: Path | str | None = None, *,
             store: StoreBase | None = None) -> Router:
        """Load the catalogue and artifact set, with the online snapshot (the store's when it shares one)."""
        from ..catalogue import load_catalogue

        catalogue = load_catalogue(store_catalogue_path(home, catalogue_path))
        artifacts = load_artifact_set(active_artifacts_dir(home), list(catalogue.ids), cache=encoder_cache_dir(home))
        router = cls(artifacts, catalogue)
        from ..learning.online import load_snapshot

        snapshot = load_snapshot(home_dir(home), artifacts, store)
        if snapshot is not None:
            router.use_online(snapshot)
        return router

    def use_online(self, model: OnlineModel) -> None:
        """Serve the heads and A⁻¹ as feedback left them, plus the dynamic-feedback bonus.

        A cold LLM for which feedback has fitted heads (`learning.updates.fit_cold`, this very
        incarnation of it) is served as warm from then on: its heads and A⁻¹, on every query, out of
        `cold_ids` and the exploration share. Every other LLM's heads stay as they are.
        """
        from dataclasses import replace as dc_replace

        from ..learning.online import cold_incarnation

        offline = self.offline_artifacts
        heads = dict(offline.heads)
        entries = offline.manifest.heads
        for llm, h in heads.items():
            entry = entries.get(llm)
            heads[llm] = model.overlay(llm, h, None if entry is None else entry.quality.sha256)
        for llm in self.llm_ids:
            cold = offline.cold.get(llm)
            if llm not in heads and cold is not None:
                learned = model.warm_heads(llm, cold_incarnation(offline.manifest, llm), cold.prior_response_tokens)
                if learned is not None:
                    heads[llm] = learned
        self.artifacts = dc_replace(offline, heads=heads)
        self.cold_ids = tuple(i for i in self.llm_ids if i not in heads)
        model.bind(self.llm_ids)
        self.online = model

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from ..core.encoder import Encoder

            self._encoder = Encoder.from_dir(self.artifacts.encoder_dir, self.artifacts.graph_cache())
        return self._encoder

    def preset(self, name: str) -> Preset:
        try:
            return self.artifacts.presets[name]
        except KeyError:
            known = ", ".join(self.artifacts.presets)
            raise UsageError(f"unknown budget '{name}'; choose one of: {known}", param="budget") from None

    def resolve_budget(self, budget: str | None, lam: float | None) -> tuple[str | None, float]:
        if lam is not None:
            if budget is not None:
                raise UsageError("give one, not both", param=("budget", "lambda"))
            if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
                raise UsageError(f"must be a number (got {type(lam).__name__})", param="lambda")
            if isinstance(lam, numbers.Integral) and lam > 1e300:  # float() of 10**400 raises OverflowError
                raise UsageError("must be a finite number >= 0 (got a huge integer)", param="lambda")
            return None, decision.check_lambda(lam)
        preset = self.preset(budget or DEFAULT_BUDGET)
        return preset.name, preset.lam

    def predict_encoded(
        self,
        embeddings: np.ndarray,
        token_ids: list[np.ndarray],
        prompt_tokens: np.ndarray,
        explore_keys: np.ndarray | None = None,
    ) -> Predictions:
        """Predictions for encoded queries; `explore_keys` in [0, 1) decide where cold LLMs are offered.

        `embeddings` are the encoder's; the set's projection (tag-enhanced embedding), if any, is
        applied here, and the heads, the uncertainty term and the feedback bonus all read its output.
        """
        e = self.artifacts.embed(embeddings)
        x = build_features(e, token_ids, self.artifacts.features)
        n = len(e)
        keys = np.ones(n) if explore_keys is None else np.asarray(explore_keys, dtype=np.float64)
        cols_q, cols_len, cols_unc, cols_ok = [], [], [], []
        unc_of: dict[int, np.ndarray] = {}  # LLMs sharing one A⁻¹ (same training rows) share the product
        warm = [self.artifacts.heads[i] for i in self.llm_ids if i in self.artifacts.heads]
        both = [head for h in warm for head in (h.quality, h.length)]
        if self._bank is None or not self._bank.same_heads(both):
            self._bank = HeadBank(both)  # built once, and again only when a refit replaced a head
        out = iter(self._bank.predict(x).T)
        for llm_id in self.llm_ids:
            h = self.artifacts.heads.get(llm_id)
            if h is not None:
                cols_q.append(next(out))
                cols_len.append(next(out))
                if id(h.a_inv) not in unc_of:
                    unc_of[id(h.a_inv)] = ((e @ h.a_inv) * e).sum(axis=1)  # eᵀA⁻¹e per row, via BLAS
                cols_unc.append(unc_of[id(h.a_inv)])
                cols_ok.append(np.ones(n, dtype=bool))
            else:
                cold = self.artifacts.cold[llm_id]
                cols_q.append(np.full(n, cold.prior_quality))
                cols_len.append(np.full(n, cold.prior_response_tokens))
                cols_unc.append((e * e).sum(axis=1))  # A = I: nothing observed yet
                cols_ok.append(keys < cold.explore_share)
        quality = np.stack(cols_q, axis=1)
        length = np.stack(cols_len, axis=1)
        p_tok = np.asarray(prompt_tokens, dtype=np.float64)
        cost = p_tok[:, None] * self._price_in + length * self._price_out
        return Predictions(
            llm_ids=self.llm_ids,
            quality=quality,
            response_tokens=length,
            prompt_tokens=p_tok,
            cost_usd=cost,
            cost_norm=cost / self.artifacts.cost_scale_usd,
            uncertainty=np.stack(cols_unc, axis=1),
            # Waits depend on the queue at decision time: `decisions` reads them from the state.
            wait_s=np.zeros_like(cost),
            available=np.stack(cols_ok, axis=1),
            bonus=self.online.bonus(e) if self.online is not None else 0.0,
            embeddings=np.asarray(embeddings, dtype=np.float32),  # the encoder's: what the decision log keeps
            token_ids=token_ids,
        )

    def predict(self, queries: Sequence[str], cache: Path | None = None,
                timings: dict[str, float] | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> Predictions:
        """Encode and predict; `cache` (a folder) reuses embeddings of the same texts (embcache).

        With `timings`, the seconds spent encoding (tokenizer and model) and predicting from the
        embeddings are stored under "encode" and "predict" (the server reports them per request).
        With `progress`, the texts are encoded in chunks and `progress("encode", done, total)` is
        called as they go (a long evaluation).
        """
        started = time.perf_counter()
        encode: Callable[[list[str]], Encoded] = self.encoder.encode
        if progress is not None:
            from ..core.encoder import encode_in_chunks

            def encode_reporting(texts: list[str]) -> Encoded:
                return encode_in_chunks(self.encoder.encode, list(texts), progress)

            encode = encode_reporting
        if cache is None:
            enc = encode(list(queries))
        else:
            from ..embcache import encode_cached, seeds_for_set

            enc, _ = encode_cached(encode, self.artifacts.encoder_dir, queries, cache,
                                   seed_rows=seeds_for_set(self.artifacts.path))
        encoded = time.perf_counter()
        keys = explore_keys(queries) if self.cold_ids else None
        preds = self.predict_encoded(enc.embeddings, enc.token_ids, enc.n_tokens, keys)
        if timings is not None:
            timings["encode"] = encoded - started
            timings["predict"] = time.perf_counter() - encoded
        return preds

    def decide(self, preds: Predictions, lam: float) -> tuple[np.ndarray, decision.Scores]:
        return decision.route_indices(
            preds.quality, preds.cost_norm, preds.uncertainty, preds.wait_s, lam, self.weights, preds.available,
            preds.bonus,
        )

    def resolve(self, request: RouteRequest) -> tuple[str, str | None, float, WaitPolicy]:
        """Check one request: its query text, budget name (None for an explicit λ), λ and waiting policy.
        Raises a `MixLLMError` naming the parameter at fault."""
        if not isinstance(request, RouteRequest):
            raise TypeError(f"expected a RouteRequest, got {type(request).__name__}")
        text = check_query(request.query)
        check_id(request.id)
        name, lam = self.resolve_budget(request.budget, request.lam)
        return text, name, lam, request.policy or WaitPolicy.default()

    def route_batch(self, requests: Sequence[RouteRequest], *, state: StoreBase | None = None,
                    log_queries: bool = False, timings: dict[str, float] | None = None) -> list[Decision]:
        """Route every request, in order: the batch is encoded once (encode → heads), then each query is
        decided; with a state store, admitted to the queue in one transaction per waiting policy, each
        query seeing the load the earlier ones left (without one, every wait is 0: a dry run).

        With `timings`, the seconds spent in "encode", "predict" and "decide" are stored there.
        """
        if isinstance(requests, RouteRequest):
            raise TypeError("route_batch takes a sequence of RouteRequest; wrap a single one in a list")
        checked = [self.resolve(r) for r in requests]
        if not checked:
            return []
        texts = [c[0] for c in checked]
        preds = self.predict(texts, timings=timings)
        started = time.perf_counter()
        groups: dict[tuple[WaitPolicy, frozenset[str]], list[int]] = {}
        for k, (request, (_, _, _, policy)) in enumerate(zip(requests, checked)):
            groups.setdefault((policy, request.exclude), []).append(k)
        out: list[Decision | None] = [None] * len(checked)
        for (policy, exclude), rows in groups.items():
            sub = preds if len(groups) == 1 else preds.take(np.array(rows))
            if exclude:
                sub = replace(sub, available=sub.available & self.offered(exclude)[None, :])
            decided = self.decisions(sub, [checked[k][1] for k in rows], [checked[k][2] for k in rows],
                                     [requests[k].id for k in rows], queries=[texts[k] for k in rows], state=state,
                                     policy=policy, log_queries=log_queries)
            for k, d in zip(rows, decided):
                out[k] = d
        if timings is not None:
            timings["decide"] = time.perf_counter() - started
        return [d for d in out if d is not None]

    def route(self, queries: Sequence[str], budget: str | None = None, lam: float | None = None,
              ids: Sequence[str | None] | None = None, *, state: StoreBase | None = None,
              policy: WaitPolicy | None = None) -> list[Decision]:
        """Route `queries` under one budget (`route_batch` with one request per query)."""
        if isinstance(queries, (str, bytes)):
            raise TypeError("Router.route takes a sequence of queries; for one query pass [query]")
        ids = list(ids) if ids is not None else [None] * len(queries)
        return self.route_batch([RouteRequest(q, i, budget, lam, policy) for q, i in zip(queries, ids)], state=state)

    def offered(self, exclude: frozenset[str]) -> np.ndarray:
        """Which LLMs (a bool per `llm_ids`) may be offered when `exclude` is left out."""
        return np.array([i not in exclude for i in self.llm_ids], dtype=bool)

    def latency_defaults(self) -> dict[str, LatencyEstimate]:
        return {i: LatencyEstimate(self.catalogue.get(i).ttft_ms, self.catalogue.get(i).output_tokens_per_s)
                for i in self.llm_ids}

    @property
    def slots(self) -> list[int]:
        return [self.catalogue.get(i).slots for i in self.llm_ids]

    def decisions(
        self,
        preds: Predictions,
        budget: str | None | Sequence[str | None],
        lam: float | Sequence[float],
        ids: Sequence[str | None] | None = None,
        *,
        queries: Sequence[str] | None = None,
        state: StoreBase | None = None,
        policy: WaitPolicy | None = None,
        log_queries: bool = False,
    ) -> list[Decision]:
        """Decide every query (`budget` and `lam` may be per query).

        Without a state store every wait is 0 (a dry run). With one, the queries are admitted one
        after another in one transaction, each seeing the queue the earlier ones left.
        """
        policy = policy or WaitPolicy.default()
        weights = replace(self.weights, tolerance_s=policy.tolerance_s)
        n = len(preds.prompt_tokens)
        ids = list(ids) if ids is not None else [None] * n
        budgets: list[str | None] = list(budget) if isinstance(budget, (list, tuple)) else [budget] * n  # type: ignore[list-item]
        lams: list[float] = [float(x) for x in lam] if isinstance(lam, (list, tuple)) else [float(lam)] * n  # type: ignore[arg-type]
        if state is None:
            return [self._decide_one(preds, i, preds.wait_s[i], lams[i], budgets[i], ids[i], weights, policy)[0]
                    for i in range(n)]
        import hashlib
        import time

        from ..core.latency import service_time_s
        from ..state.base import Admission

        if queries is None:
            raise ValueError("queries are needed to record decisions")
        out = []
        n_buckets = self.artifacts.features.n_buckets if self.artifacts.features is not None else 0
        with state.transaction() as conn:
            now = time.time()
            est = state.estimates(conn, self.latency_defaults())
            queue = state.queue(conn, self.llm_ids, self.slots, now)
            for i in range(n):
                waits = queue.waits(now)
                d, j = self._decide_one(preds, i, waits, lams[i], budgets[i], ids[i], weights, policy)
                llm = self.llm_ids[j]
                slot, start, end = queue.admit(j, now, float(service_time_s(est[llm], preds.response_tokens[i, j])))
                admission = Admission(
                    llm=llm, budget=budgets[i], lam=lams[i],
                    query_sha256=hashlib.sha256(queries[i].encode("utf-8")).hexdigest(),
                    prompt_tokens=int(preds.prompt_tokens[i]),
                    predicted_response_tokens=float(preds.response_tokens[i, j]),
                    predicted_cost_usd=float(preds.cost_usd[i, j]),
                    embedding=None if preds.embeddings is None else
                    np.asarray(preds.embeddings[i], dtype=np.float32).tobytes(),
                    # Not the token ids (they decode back to the query): only the hashed bucket counts
                    # the lexical features read (`core.features.BucketCounts`), which give refits and
                    # cold fits the same features. Nothing lexical without a lexical part.
                    token_ids=None if preds.token_ids is None or n_buckets == 0 else
                    pack_lexical(preds.token_ids[i], n_buckets),
                    candidates=json.dumps([c.to_dict() for c in d.candidates], separators=(",", ":")),
                    query_text=queries[i] if log_queries else None,
                )
                decision_id = state.admit(conn, admission, now, float(waits[j]), slot, start, end)
                out.append(replace(d, decision_id=decision_id))
        return out

    def choose_one(self, preds: Predictions, i: int, waits: np.ndarray, lam: float, weights: decision.Weights,
                   policy: WaitPolicy) -> tuple[int, decision.Scores, np.ndarray]:
        """The choice for query i given the current waits: (index, its one-row scores, availability)."""
        from ..core.latency import within_tolerance

        avail = preds.available[i].copy()
        if policy.strict:
            avail &= within_tolerance(np.where(avail, waits, np.inf), policy.tolerance_s)
        row = slice(i, i + 1)
        bonus = preds.bonus[row] if isinstance(preds.bonus, np.ndarray) else preds.bonus
        choice, s = decision.route_indices(preds.quality[row], preds.cost_norm[row], preds.uncertainty[row],
                                           np.asarray(waits)[None, :], lam, weights, avail[None, :], bonus)
        return int(choice[0]), s, avail

    def _decide_one(self, preds: Predictions, i: int, waits: np.ndarray, lam: float, budget: str | None,
                    qid: str | None, weights: decision.Weights, policy: WaitPolicy) -> tuple[Decision, int]:
        j, s, avail = self.choose_one(preds, i, waits, lam, weights, policy)
        cands = tuple(
            Candidate(
                llm=llm,
                quality=float(preds.quality[i, k]),
                response_tokens=float(preds.response_tokens[i, k]),
                cost_usd=float(preds.cost_usd[i, k]),
                wait_ms=float(waits[k] * 1000.0),
                uncertainty=float(s.uncertainty[0, k]),
                penalty=float(s.penalty[0, k]),
                score=float(s.total[0, k]),
                cold=llm in self.cold_ids,
                available=bool(avail[k]),
            )
            for k, llm in enumerate(self.llm_ids)
        )
        d = Decision(id=qid, choice=self.llm_ids[j], budget=budget, lam=lam,
                     prompt_tokens=int(preds.prompt_tokens[i]), candidates=cands)
        return d, j
