"""Privacy by default (issue 16): without --log-queries the decision log keeps nothing the query can
be read back from (no token ids: only the hashed bucket counts the lexical features read), and online
learning computes exactly the features it computed from the token ids."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from conftest import CHAT, CODE

from mixllm_cli.core.features import (
    LEXICAL_MAGIC,
    BucketCounts,
    build_features,
    pack_lexical,
    unpack_lexical,
)
from mixllm_cli.paths import REPO_ROOT

QUERY = "write a python function to sum two numbers tell me a story about the dog"


def decision_rows(home):
    with sqlite3.connect(home / "state.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM decisions")]


def payload_ints(blob: bytes) -> np.ndarray:
    """Every int32 the blob holds, read the naive way (as token ids were stored)."""
    return np.frombuffer(blob[: len(blob) - len(blob) % 4], dtype="<i4")


def test_route_without_log_queries_stores_no_token_ids(trained_home, cli):
    from mixllm_cli.routing.router import Router

    code, out, err = cli("route", QUERY, "--json")
    assert code == 0, err
    (row,) = decision_rows(trained_home)
    assert row["id"] == json.loads(out)["decision_id"] and row["query_text"] is None
    blob = bytes(row["token_ids"])
    assert blob.startswith(LEXICAL_MAGIC)
    router = Router.load(trained_home)
    enc = router.encoder.encode([QUERY])
    ids = enc.token_ids[0]
    assert len(ids) > 10
    assert ids.astype("<i4").tobytes() not in blob  # the id sequence is nowhere in the row ...
    for column, value in row.items():  # ... nor the text, nor any word of it as text
        if isinstance(value, str):
            assert "python" not in value and "story" not in value, column
    # Decoded with the tokenizer as the token ids used to be, the stored numbers do not give the query back.
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(router.artifacts.encoder_dir / "tokenizer.json"))
    assert tok.decode(ids.tolist()) == QUERY  # what the token ids gave back
    stored = [int(i) for i in payload_ints(blob[len(LEXICAL_MAGIC):]) if 0 <= i < tok.get_vocab_size()]
    decoded = tok.decode(stored)
    assert QUERY not in decoded and decoded.split() != QUERY.split()
    unpacked = unpack_lexical(blob)
    assert isinstance(unpacked, BucketCounts) and unpacked.n_buckets == router.artifacts.features.n_buckets


def test_with_log_queries_the_text_is_kept_as_before(trained_home, cli):
    assert cli("route", QUERY, "--json", "--log-queries")[0] == 0
    (row,) = decision_rows(trained_home)
    assert row["query_text"] == QUERY and bytes(row["token_ids"]).startswith(LEXICAL_MAGIC)


def test_the_shipped_tokenizer_cannot_decode_what_is_stored():
    """On the shipped encoder's tokenizer (30,522 word pieces) and its 4,096 buckets: the stored numbers,
    decoded as token ids, say nothing of the query's words."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(REPO_ROOT / "artifacts" / "encoder" / "tokenizer.json"))
    query = "Please summarise the confidential merger agreement between Initech and Globex for the board"
    ids = np.array(tok.encode(query, add_special_tokens=False).ids, dtype=np.int32)
    blob = pack_lexical(ids, 4096)
    assert ids.astype("<i4").tobytes() not in blob
    decoded = tok.decode([int(i) for i in payload_ints(blob[len(LEXICAL_MAGIC):]) if 0 <= i < tok.get_vocab_size()])
    words = {w.lower() for w in query.split() if len(w) > 3}
    assert not words & {w.lower() for w in decoded.split()}, decoded
    assert tok.decode(ids.tolist()).lower() == query.lower()  # the token ids themselves did decode


def test_bucket_counts_give_the_features_of_the_token_ids_bit_for_bit(trained_home):
    from mixllm_cli.routing.router import Router

    router = Router.load(trained_home)
    spec = router.artifacts.features
    queries = CODE + CHAT + [QUERY, "?", QUERY * 40]
    enc = router.encoder.encode(queries)
    stored = [unpack_lexical(pack_lexical(ids, spec.n_buckets)) for ids in enc.token_ids]
    assert all(isinstance(s, BucketCounts) for s in stored)
    from_ids = build_features(enc.embeddings, enc.token_ids, spec)
    from_counts = build_features(enc.embeddings, stored, spec)
    assert from_ids.shape[1] > enc.embeddings.shape[1]
    np.testing.assert_array_equal(from_counts, from_ids)
    # A row logged before (int32 token ids in the same column) still reads as its ids.
    legacy = unpack_lexical(enc.token_ids[0].astype(np.int32).tobytes())
    np.testing.assert_array_equal(legacy, enc.token_ids[0])
    # Counts made for another number of buckets cannot be re-hashed: no lexical part, not wrong ones.
    other = build_features(enc.embeddings[:1], [unpack_lexical(pack_lexical(enc.token_ids[0], 128))], spec)
    assert not other[0, enc.embeddings.shape[1]:].any()
    np.testing.assert_array_equal(other[0, : enc.embeddings.shape[1]], from_ids[0, : enc.embeddings.shape[1]])
    for damaged in (LEXICAL_MAGIC, LEXICAL_MAGIC + b"\x01\x00\x00\x00\x05\x00\x00\x00", None):
        assert len(unpack_lexical(damaged)) == 0


def _as_legacy(home, router, queries_by_id):
    """Rewrite the decision log as the code before issue 16 wrote it: the token ids of each query."""
    with sqlite3.connect(home / "state.sqlite3") as db:
        for did, query in queries_by_id.items():
            ids = router.encoder.encode([query]).token_ids[0].astype(np.int32)
            db.execute("UPDATE decisions SET token_ids = ? WHERE id = ?", (ids.tobytes(), did))


def test_refits_from_bucket_counts_equal_refits_from_token_ids(trained_home, cli, monkeypatch):
    from mixllm_cli.learning.online import load_snapshot
    from mixllm_cli.learning.updates import catch_up
    from mixllm_cli.routing.router import Router
    from mixllm_cli.state.sqlite import StateStore

    monkeypatch.setenv("MIXLLM_ONLINE_REFIT", "1")
    queries = [f"{(CODE + CHAT)[k % 10]} {k}" for k in range(40)]
    by_id = {}
    for q in queries:
        code, out, err = cli("route", q, "--json", "--lambda", "0", "--max-wait-s", "1e9")
        assert code == 0, err
        by_id[json.loads(out)["decision_id"]] = q
    src = trained_home / "fb.jsonl"
    src.write_text("".join(json.dumps({"id": d, "quality": float(k % 3 == 0), "response_tokens": 5 + k}) + "\n"
                           for k, d in enumerate(by_id)))
    assert cli("feedback", "--jsonl", src)[0] == 0
    router = Router.load(trained_home)
    store = StateStore.for_home(trained_home)
    now = load_snapshot(trained_home, router.offline_artifacts, store)
    assert now.refit["vendor/small"]["refits"] == 1
    _as_legacy(trained_home, router, by_id)
    catch_up(trained_home, router.offline_artifacts, store, rebuild=True)
    before = load_snapshot(trained_home, router.offline_artifacts, store)
    assert before.refit["vendor/small"]["refits"] == 1
    for kind in ("quality", "length"):
        np.testing.assert_array_equal(now.heads["vendor/small"][kind][0], before.heads["vendor/small"][kind][0])
        assert now.heads["vendor/small"][kind][1] == before.heads["vendor/small"][kind][1]


def test_a_cold_fit_from_bucket_counts_equals_one_from_token_ids(trained_home, cli, tmp_path):
    from test_cold_online import ADD, N, decisions_with_queries, feed, online_state, truth

    from mixllm_cli.learning.updates import catch_up
    from mixllm_cli.state.sqlite import StateStore

    assert cli(*ADD, "--explore-share", "1")[0] == 0
    ds = decisions_with_queries(cli, tmp_path, N)
    feed(cli, tmp_path, [truth(d) for d in ds])
    router, now = online_state(trained_home)
    assert now.fitted == N and now.length is not None
    _as_legacy(trained_home, router, {d["decision_id"]: d["query"] for d in ds})
    catch_up(trained_home, router.offline_artifacts, StateStore.for_home(trained_home), rebuild=True)
    _, before = online_state(trained_home)
    assert before.fitted == N
    for a, b in ((now.quality, before.quality), (now.length, before.length)):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1]


@pytest.mark.parametrize("n_buckets", [64, 4096])
def test_packing_is_compact_and_round_trips(n_buckets):
    ids = np.array([5, 9, 5, 9, 5, 2000, 7], dtype=np.int32)
    bc = unpack_lexical(pack_lexical(ids, n_buckets))
    ref = BucketCounts.of(ids, n_buckets)
    np.testing.assert_array_equal(bc.buckets, ref.buckets)
    np.testing.assert_array_equal(bc.counts, ref.counts)
    assert bc.counts.sum() == 2 * len(ids) - 1  # every unigram and bigram, counted
