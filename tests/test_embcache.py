"""The embedding cache: per query, keyed by encoder and text, never stale, bounded; damage is rebuilt."""

from __future__ import annotations

import numpy as np
import pytest

from mixllm_cli.core.encoder import Encoder
from mixllm_cli.embcache import DB_NAME, QueryCache, encode_cached, encoder_identity, query_key, text_sha256


def counting(encoder):
    """An encode function that records the texts it is given, and that record."""
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return encoder.encode(texts)

    return calls, encode


def test_hit_returns_what_the_encoder_returned_and_skips_it(tiny, tmp_path):
    enc_dir, encoder = tiny / "shipped" / "encoder", Encoder.from_dir(tiny / "shipped" / "encoder")
    calls, encode = counting(encoder)

    texts = ["write a python function", "tell me a story about the dog", "é ü 日本"]
    first, hit1 = encode_cached(encode, enc_dir, texts, tmp_path)
    second, hit2 = encode_cached(encode, enc_dir, texts, tmp_path)
    assert (hit1, hit2) == (False, True) and calls == [texts]
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    assert [t.tolist() for t in first.token_ids] == [t.tolist() for t in second.token_ids]
    np.testing.assert_array_equal(first.n_tokens, second.n_tokens)
    # another order, a subset: nothing to encode, and row i is still texts[i]'s
    rev, hit3 = encode_cached(encode, enc_dir, texts[::-1], tmp_path)
    assert hit3 and calls == [texts]
    np.testing.assert_array_equal(rev.embeddings, first.embeddings[::-1])


def test_an_overlapping_dataset_encodes_only_its_new_queries(tiny, tmp_path):
    enc_dir, encoder = tiny / "shipped" / "encoder", Encoder.from_dir(tiny / "shipped" / "encoder")
    calls, encode = counting(encoder)

    encode_cached(encode, enc_dir, ["a cat", "a dog"], tmp_path)
    mixed, hit = encode_cached(encode, enc_dir, ["a dog", "a bird", "a cat", "a bird"], tmp_path)
    assert not hit and calls == [["a cat", "a dog"], ["a bird"]]  # the new one once, though it is there twice
    fresh = encoder.encode(["a dog", "a bird", "a cat", "a bird"])
    np.testing.assert_array_equal(mixed.embeddings, fresh.embeddings)  # a vector never depends on its batch
    assert [t.tolist() for t in mixed.token_ids] == [t.tolist() for t in fresh.token_ids]
    np.testing.assert_array_equal(mixed.n_tokens, fresh.n_tokens)


def test_the_key_depends_on_the_encoder_and_the_text(tiny, tmp_path):
    ident = encoder_identity(tiny / "shipped" / "encoder")
    assert query_key(ident, text_sha256("a")) != query_key(ident, text_sha256("b"))
    assert query_key(ident, text_sha256("a")) != query_key("another encoder", text_sha256("a"))


def test_a_damaged_cache_is_set_aside_and_rebuilt(tiny, tmp_path):
    enc_dir = tiny / "shipped" / "encoder"
    encoder = Encoder.from_dir(enc_dir)
    encode_cached(encoder.encode, enc_dir, ["one query"], tmp_path)
    db = tmp_path / DB_NAME
    for side in tmp_path.glob(DB_NAME + "-*"):
        side.unlink()
    db.write_bytes(b"not a database at all, " * 100)
    enc, hit = encode_cached(encoder.encode, enc_dir, ["one query"], tmp_path)
    assert not hit and enc.embeddings.shape[0] == 1
    assert encode_cached(encoder.encode, enc_dir, ["one query"], tmp_path)[1]  # rebuilt, and a hit again


def test_an_unusable_cache_folder_only_loses_the_speed_up(tiny, tmp_path):
    enc_dir = tiny / "shipped" / "encoder"
    encoder = Encoder.from_dir(enc_dir)
    (tmp_path / "file").write_text("a file where the cache folder should be")
    enc, hit = encode_cached(encoder.encode, enc_dir, ["one query"], tmp_path / "file")
    assert not hit and enc.embeddings.shape[0] == 1


def test_the_cache_stays_within_its_cap_dropping_the_oldest(tiny, tmp_path, monkeypatch):
    enc_dir = tiny / "shipped" / "encoder"
    encoder = Encoder.from_dir(enc_dir)
    monkeypatch.setenv("MIXLLM_CACHE_MAX_MB", "0.02")  # ~20 KB: a few dozen rows of the tiny encoder
    for start in range(0, 400, 50):
        encode_cached(encoder.encode, enc_dir, [f"query number {i}" for i in range(start, start + 50)], tmp_path)
    with QueryCache(tmp_path) as cache:
        total = cache.db.execute("SELECT sum(nbytes) FROM q").fetchone()[0]
        ident = encoder_identity(enc_dir)
        newest = query_key(ident, text_sha256("query number 399"))
        oldest = query_key(ident, text_sha256("query number 0"))
        assert total <= 0.02 * 1024 * 1024
        assert newest in cache.get([newest]) and oldest not in cache.get([oldest])


def test_training_rows_seed_the_cache_with_the_exact_vectors(tiny, tmp_path):
    from mixllm_cli.training_rows import TrainingRows, save_training_rows

    enc_dir = tiny / "shipped" / "encoder"
    encoder = Encoder.from_dir(enc_dir)
    texts = ["seeded one", "seeded two"]
    enc = encoder.encode(texts)
    rows = tmp_path / "training_rows.npz"
    save_training_rows(rows, TrainingRows(
        llm_ids=["m"], embeddings=enc.embeddings, token_ids=enc.token_ids, quality=np.ones((2, 1)),
        response_tokens=np.ones((2, 1)), query_sha256=[text_sha256(t) for t in texts],
        encoder=encoder_identity(enc_dir)))

    def refuse(texts):
        raise AssertionError(f"encoded {texts}")

    got, hit = encode_cached(refuse, enc_dir, texts[::-1], tmp_path / "cache", seed_rows=[rows])
    assert hit
    np.testing.assert_array_equal(got.embeddings, enc.embeddings[::-1])
    # rows of another encoder seed nothing
    other = tmp_path / "other.npz"
    save_training_rows(other, TrainingRows(
        llm_ids=["m"], embeddings=enc.embeddings, token_ids=enc.token_ids, quality=np.ones((2, 1)),
        response_tokens=np.ones((2, 1)), query_sha256=[text_sha256("x"), text_sha256("y")], encoder="another"))
    with pytest.raises(AssertionError, match="encoded"):
        encode_cached(refuse, enc_dir, ["x"], tmp_path / "cache", seed_rows=[other])


def test_evaluate_fills_the_homes_cache_and_no_cache_leaves_none(trained_home, tiny, cli):
    code, _, err = cli("evaluate", tiny / "train.jsonl", "--json", "--no-cache")
    assert code == 0, err
    assert not (trained_home / "cache" / "embeddings").exists()
    code, out, err = cli("evaluate", tiny / "train.jsonl", "--json")
    assert code == 0, err
    assert (trained_home / "cache" / "embeddings" / DB_NAME).is_file()
    assert cli("evaluate", tiny / "train.jsonl", "--json")[1] == out  # the cached run reports the same
