"""The embedding cache: keyed by encoder and texts, never stale, damage is recomputed."""

from __future__ import annotations

import numpy as np

from mixllm_cli.core.encoder import Encoder
from mixllm_cli.embcache import cache_key, encode_cached, encoder_identity


def test_hit_returns_what_the_encoder_returned_and_skips_it(tiny, tmp_path):
    enc_dir = tiny / "shipped" / "encoder"
    encoder = Encoder.from_dir(enc_dir)
    calls = []

    def encode(texts):
        calls.append(len(texts))
        return encoder.encode(texts)

    texts = ["write a python function", "tell me a story about the dog", "é ü 日本"]
    first, hit1 = encode_cached(encode, enc_dir, texts, tmp_path)
    second, hit2 = encode_cached(encode, enc_dir, texts, tmp_path)
    assert (hit1, hit2) == (False, True) and calls == [3]
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    assert [t.tolist() for t in first.token_ids] == [t.tolist() for t in second.token_ids]
    np.testing.assert_array_equal(first.n_tokens, second.n_tokens)
    # other texts (or another order) are another entry
    _, hit3 = encode_cached(encode, enc_dir, texts[::-1], tmp_path)
    assert not hit3 and calls == [3, 3]


def test_the_key_depends_on_the_encoder_and_every_text(tiny, tmp_path):
    ident = encoder_identity(tiny / "shipped" / "encoder")
    assert cache_key(ident, ["a", "b"]) != cache_key(ident, ["a", "c"])
    assert cache_key(ident, ["a", "b"]) != cache_key("another encoder", ["a", "b"])
    assert cache_key(ident, ["ab"]) != cache_key(ident, ["a", "b"])


def test_a_damaged_entry_is_recomputed(tiny, tmp_path):
    enc_dir = tiny / "shipped" / "encoder"
    encoder = Encoder.from_dir(enc_dir)
    encode_cached(encoder.encode, enc_dir, ["one query"], tmp_path)
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(b"not an npz")
    enc, hit = encode_cached(encoder.encode, enc_dir, ["one query"], tmp_path)
    assert not hit and enc.embeddings.shape[0] == 1
    assert encode_cached(encoder.encode, enc_dir, ["one query"], tmp_path)[1]  # replaced by a good one


def test_evaluate_fills_the_homes_cache_and_no_cache_leaves_none(trained_home, tiny, cli):
    code, _, err = cli("evaluate", tiny / "train.jsonl", "--json", "--no-cache")
    assert code == 0, err
    assert not (trained_home / "cache").exists()
    code, out, err = cli("evaluate", tiny / "train.jsonl", "--json")
    assert code == 0, err
    assert len(list((trained_home / "cache" / "embeddings").glob("*.npz"))) == 1
    assert cli("evaluate", tiny / "train.jsonl", "--json")[1] == out  # the cached run reports the same
