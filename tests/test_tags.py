"""Tags, domains, and the tag pipeline through train-offline, route, feedback and `mixllm tags`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mixllm_cli.core import tag_domains as D
from mixllm_cli.core import tag_phrases as P
from mixllm_cli.core import tagging as T

FEW_SHOT = (
    "Please answer with the letter of the correct answer.\n\n"
    "Kyle doesn't wear leg warmers to bed, while Logan does. _ is more likely to live in a colder climate.\n"
    "A) Kyle\nB) Logan\nPrint only a single choice from \"A\" or \"B\" without explanation. Answer:\nB\n\n"
    "Why does a plastic rod have a negative charge after being rubbed with a piece of fur?\n"
    "A) The fur gives up protons to the rod.\nB) The rod gains electrons from the fur.\nAnswer:"
)


def words_of(text):
    return re.findall(r"[a-z0-9'\-]+", text.lower())


def is_ngram_of(phrase, text):
    w, t = phrase.split(), words_of(text)
    return any(t[i:i + len(w)] == w for i in range(len(t) - len(w) + 1))


# ---------------------------------------------------------------- tags


def test_candidates_are_ngrams_of_the_question_block():
    cands = P.candidate_ngrams(FEW_SHOT)
    block = P.question_block(FEW_SHOT)
    assert block.startswith("Why does a plastic rod")
    assert cands and all(is_ngram_of(c, block) for c in cands)
    assert "plastic rod" in cands and "negative charge" in cands
    assert not any(c.split()[0] in P.STOPWORDS or c.split()[-1] in P.STOPWORDS for c in cands)
    assert "leg warmers" not in cands  # an earlier few-shot example is not the question
    assert not any(len(c.split()) > P.MAX_NGRAM for c in cands)


def test_candidates_skip_names_and_never_span_a_line():
    q = "Brian always tried to work harder than Kenneth, because Kenneth was lazy.\nA) Brian\nB) Kenneth"
    cands = P.candidate_ngrams(q)
    assert "kenneth" not in cands and not any("kenneth" in c for c in cands)
    assert "lazy" in cands
    assert not any("lazy brian" in c for c in cands)


def test_vocabulary_drops_one_off_phrases_and_boilerplate():
    cands = [["boilerplate", "rare"]] + [["boilerplate", "common"]] * 4 + [["boilerplate"]] * 95
    vocab = P.tag_vocabulary(cands, min_df=3, max_df_share=0.05)
    assert vocab == ["common"]


def test_pick_tags_takes_the_closest_and_skips_nested_phrases():
    cands = ["plastic rod", "rod", "fur", "charge"]
    emb = np.array([[1.0, 0, 0], [0.99, 0.14, 0], [0, 1.0, 0], [0.6, 0.8, 0]])
    assert P.pick_tags(cands, emb, np.array([1.0, 0, 0]), n=2) == ["plastic rod", "charge"]
    assert P.pick_tags([], np.zeros((0, 3)), np.ones(3)) == []


def fake_embed(texts):
    """A deterministic stand-in encoder: a hashed bag of words."""
    out = np.zeros((len(texts), 16))
    for i, t in enumerate(texts):
        for w in t.split():
            out[i, sum(map(ord, w)) % 16] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def test_derived_tags_are_ngrams_of_the_query_plus_the_task():
    queries = ["how do plants make food from sunlight", "why do plants need sunlight and water",
               "what do plants make from sunlight", "write a function to sort a list",
               "write a function to reverse a list", "write a function to merge a list"] * 2
    tasks = ["science"] * 3 + ["code"] * 3 + ["science"] * 3 + ["code"] * 3
    run = T.fit_tag_pipeline(queries, fake_embed(queries), fake_embed, tasks=tasks,
                             settings=T.TagSettings(max_iter=5, k_grid=(2, 3)))
    for q, task, tags in zip(queries, tasks, run.tags):
        assert tags[-1] == task
        assert 1 <= len(tags) - 1 <= P.TAGS_PER_QUERY
        assert all(is_ngram_of(t, q) for t in tags[:-1])
    assert run.report["tag_source"] == {"given": 0, "derived": len(queries)}
    assert run.model.domains.k in (2, 3) and len(run.domains) == len(queries)


def test_given_tags_are_used_as_they_are():
    queries = ["alpha beta", "gamma delta", "alpha gamma", "beta delta"]
    given = [["maths"], ["poetry"], ["maths", "algebra"], ["poetry"]]
    vectors = {"maths": [1.0, 0.0], "algebra": [0.9, 0.44], "poetry": [0.0, 1.0]}

    def embed(texts):
        return np.array([vectors[t] for t in texts])

    run = T.fit_tag_pipeline(queries, np.ones((4, 2)) / np.sqrt(2), embed, given=given,
                             settings=T.TagSettings(max_iter=5, k_grid=(2,)))
    assert run.tags == given
    assert run.report["tag_source"] == {"given": 4, "derived": 0}
    assert run.domains[0] == run.domains[2] != run.domains[1] == run.domains[3]


# ---------------------------------------------------------------- domains


def blobs(k, n_per=30, d=16, seed=0, spread=0.08):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.repeat(centres, n_per, axis=0) + spread * rng.standard_normal((k * n_per, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(k), n_per)


@pytest.mark.parametrize("k", [3, 5, 8])
def test_choose_k_finds_the_number_of_clusters(k):
    x, _ = blobs(k)
    best, scores = D.choose_k(x, x, grid=(2, 3, 4, 5, 6, 8, 10))
    assert best == k, scores


def test_kmeans_recovers_the_clusters():
    x, truth = blobs(4)
    _, labels, _ = D.spherical_kmeans(x, 4, seed=3)
    # the same partition up to renaming
    assert len({(a, b) for a, b in zip(truth, labels)}) == 4


def test_choose_k_refuses_domains_too_small_to_learn():
    x, _ = blobs(6, n_per=30)
    queries = np.repeat(x[:30], 10, axis=0)  # every query sits in the first cluster
    best, scores = D.choose_k(x, queries, grid=(2, 4, 6))
    assert all(scores[k]["smallest_domain"] == 0 for k in (2, 4, 6))
    assert best == 2  # nothing qualifies: the smallest k


def test_silhouette_is_high_for_separated_and_low_for_random_labels():
    x, truth = blobs(3)
    assert D.silhouette(x, truth) > 0.5
    assert abs(D.silhouette(x, np.random.default_rng(0).integers(0, 3, len(x)))) < 0.1


# ---------------------------------------------------------------- through the product

CODE_Q = "write a python function to sum two numbers"


def test_train_offline_with_tags_ships_a_verified_projection(tags_home):
    manifest = json.loads((tags_home / "artifacts" / "manifest.json").read_text())
    entry = manifest["tags"]
    path = tags_home / "artifacts" / entry["file"]
    assert entry["file"] == "projection.npz" and path.is_file()
    from mixllm_cli.files import sha256_file

    assert entry["sha256"] == sha256_file(path)
    assert entry["k"] >= 1 and entry["k_criterion"] and entry["seconds"]["total"] >= 0
    assert len(entry["domain_labels"]) == entry["k"]


def test_no_tags_writes_no_projection(trained_home):
    manifest = json.loads((trained_home / "artifacts" / "manifest.json").read_text())
    assert manifest["tags"] is None
    assert not (trained_home / "artifacts" / "projection.npz").exists()


def test_routing_applies_the_projection(tiny, tags_home, tiny_trained):
    from mixllm_cli.routing.router import Router

    with_tags = Router.load(tags_home, tiny / "models.yaml")
    general = Router.load(tiny_trained, tiny / "models.yaml")
    assert with_tags.artifacts.projection is not None and general.artifacts.projection is None
    p_tags, p_gen = with_tags.predict([CODE_Q]), general.predict([CODE_Q])
    assert not np.allclose(p_tags.quality, p_gen.quality)
    # the decision log keeps the encoder's vector; the heads read the projected one
    np.testing.assert_array_equal(p_tags.embeddings, p_gen.embeddings)
    e = with_tags.artifacts.embed(p_tags.embeddings)
    assert not np.allclose(e, p_tags.embeddings)
    h = with_tags.artifacts.heads["big"]
    np.testing.assert_allclose(p_tags.uncertainty[0, 0], float(e[0] @ h.a_inv @ e[0]), rtol=1e-5)


def test_a_tampered_projection_is_refused(tags_home, cli):
    path = tags_home / "artifacts" / "projection.npz"
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    code, _, err = cli("route", CODE_Q)
    assert code == 1
    assert err.startswith(f"Error: {path}: sha256 mismatch")


def test_route_feedback_route_with_tags(tags_home, cli):
    code, out, err = cli("route", CODE_Q, "--json", "--lambda", "0")
    assert code == 0, err
    decision = json.loads(out)
    assert cli("feedback", decision["decision_id"], "--quality", "1", "--response-tokens", "5")[0] == 0
    assert cli("feedback", decision["decision_id"], "--good")[0] == 0
    code, out, err = cli("route", CODE_Q, "--json", "--no-queue")
    assert code == 0, err
    code, out, err = cli("feedback", "--rebuild")
    assert code == 0, err


def test_tags_command_json(tags_home, cli):
    code, out, err = cli("tags", "tell me a story about the dog", "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["tags"] and all(is_ngram_of(t, "tell me a story about the dog") for t in obj["tags"])
    k = json.loads((tags_home / "artifacts" / "manifest.json").read_text())["tags"]["k"]
    assert 0 <= obj["domain"] < k and obj["domain_label"]
    assert 0 <= obj["embedding_domain"] < k and set(obj["domains"]) <= set(range(k))


def test_tags_command_for_people(tags_home, cli):
    code, out, err = cli("tags", "tell me a story about the dog")
    assert code == 0, err
    assert out.startswith("tags: ") and "\ndomain: " in out


def test_tags_command_without_a_tag_model(trained_home, cli):
    code, out, err = cli("tags", "tell me a story about the dog")
    assert code == 0, err
    assert out.startswith("tags: ") and "domain" not in out
    assert "trained without tags" in err


def test_tags_command_rejects_an_empty_query(trained_home, cli):
    code, _, err = cli("tags", "  ")
    assert code == 1
    assert err == "Error: query: is empty\n"


def test_train_offline_flags(tiny, cli, isolated_home):
    code, _, err = cli("train-offline", tiny / "train.jsonl", "--catalogue", tiny / "models.yaml", "--tags")
    assert code == 0, err
    assert "tag-enhanced embedding" in err
    manifest = json.loads((isolated_home / "artifacts" / "manifest.json").read_text())
    assert manifest["tags"]["file"] == "projection.npz"
    code, _, err = cli("train-offline", tiny / "train.jsonl", "--catalogue", tiny / "models.yaml", "--no-tags")
    assert code == 0, err
    assert json.loads((isolated_home / "artifacts" / "manifest.json").read_text())["tags"] is None
    assert not (isolated_home / "artifacts" / "projection.npz").exists()


def test_bad_tags_field_gets_one_error_line(tiny, cli, tmp_path):
    rows = [json.loads(line) for line in (tiny / "train.jsonl").read_text().splitlines()]
    rows[1]["tags"] = ["ok", 3]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = cli("train-offline", bad, "--catalogue", tiny / "models.yaml", "--tags")
    assert code == 1
    assert err == f"Error: {bad}:2: tags[1]: must be a non-empty string (got 3)\n"


def test_routing_with_tags_never_imports_sklearn(tiny, tiny_trained_tags):
    import os
    import subprocess
    import sys

    code = ("import sys; from mixllm_cli.routing.router import Router; "
            f"r = Router.load({str(tiny_trained_tags)!r}, {str(tiny / 'models.yaml')!r}); "
            f"r.route([{CODE_Q!r}], 'low'); "
            "assert r.artifacts.projection is not None and 'sklearn' not in sys.modules")
    env = {**os.environ, "MIXLLM_DEFAULT_ARTIFACTS": str(tiny / "shipped")}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0


def test_add_llm_to_a_tags_set_uses_its_projection(tags_home, cli, tmp_path):
    from conftest import CODE

    from mixllm_cli.artifacts import load_artifact_set
    from mixllm_cli.core.encoder import Encoder
    from mixllm_cli.training.fitters import a_inverse
    from mixllm_cli.training_rows import load_training_rows

    data = tmp_path / "newbie.jsonl"
    out = {"quality": 1.0, "prompt_tokens": 8, "response_tokens": 50, "cost_usd": 0.0001}
    data.write_text("".join(json.dumps({"id": f"n{i}", "query": CODE[i % 5], "outcomes": {"newbie": out}}) + "\n"
                            for i in range(30)))
    code, _, err = cli("add-llm", "newbie", "--input-usd-per-mtok", "0.5", "--output-usd-per-mtok", "1.5",
                       "--data", data)
    assert code == 0, err
    arts = load_artifact_set(tags_home / "artifacts")
    rows = load_training_rows(tags_home / "artifacts" / "heads" / "newbie.rows.npz")
    raw = Encoder.from_dir(arts.encoder_dir).encode([CODE[i % 5] for i in range(30)]).embeddings
    np.testing.assert_allclose(rows.embeddings, raw, atol=1e-3)  # stored: the encoder's vectors
    np.testing.assert_allclose(arts.heads["newbie"].a_inv, a_inverse(arts.embed(raw)), atol=1e-4)  # used: projected
    assert np.abs(a_inverse(raw) - a_inverse(arts.embed(raw))).max() > 1e-2
