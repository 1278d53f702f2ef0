"""The typed manifest: reads every format-1 manifest, writes it back byte for byte, checks sha256s."""

import json
import shutil

import pytest

from mixllm_cli import files
from mixllm_cli.errors import ArtifactError
from mixllm_cli.manifest import FORMAT, MANIFEST, ColdEntry, Manifest, verify
from mixllm_cli.paths import shipped_artifacts_dir


def test_verify_refuses_a_changed_file(tmp_path):
    f = tmp_path / "h.joblib"
    f.write_bytes(b"abc")
    good = files.sha256_file(f)
    assert verify(tmp_path, "h.joblib", good) == f
    f.write_bytes(b"abd")
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        verify(tmp_path, "h.joblib", good)
    with pytest.raises(ArtifactError, match="missing artifact file"):
        verify(tmp_path, "nope", good)


def test_corrupt_manifest(tmp_path):
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt manifest"):
        Manifest.read(tmp_path)
    (tmp_path / MANIFEST).write_text('{"format": 99}')
    with pytest.raises(ArtifactError, match="unsupported manifest format"):
        Manifest.read(tmp_path)
    with pytest.raises(ArtifactError, match="no artifact manifest"):
        Manifest.read(tmp_path / "nowhere")


def test_the_shipped_manifest_round_trips_byte_for_byte(tmp_path):
    shipped = shipped_artifacts_dir()
    m = Manifest.read(shipped)
    assert m.to_bytes() == (shipped / MANIFEST).read_bytes()
    for entry in m.heads.values():
        for f in entry.files:
            assert f.verify(shipped).is_file()
    assert m.tags is None and "tags" not in json.loads(m.to_bytes())  # absent stays absent
    m.write(tmp_path)
    assert (tmp_path / MANIFEST).read_bytes() == (shipped / MANIFEST).read_bytes()


def _shipped_json():
    return json.loads((shipped_artifacts_dir() / MANIFEST).read_text())


def test_unmodelled_keys_and_explicit_nulls_survive(tmp_path):
    data = _shipped_json()
    data["future_key"] = {"x": [1, 2]}
    data["tags"] = None
    llm = next(iter(data["heads"]))
    data["heads"][llm]["quality"]["calibration"] = 0.5
    data["presets"]["high"]["lambda"] = 3  # an int stays an int
    (tmp_path / MANIFEST).write_bytes(files.dump_json(data))
    m = Manifest.read(tmp_path)
    assert m.extra == {"future_key": {"x": [1, 2]}}
    assert m.heads[llm].quality.extra == {"calibration": 0.5}
    assert m.to_bytes() == (tmp_path / MANIFEST).read_bytes()


def test_a_malformed_entry_names_where(tmp_path):
    data = _shipped_json()
    llm = next(iter(data["heads"]))
    del data["heads"][llm]["ainv"]["sha256"]
    (tmp_path / MANIFEST).write_bytes(files.dump_json(data))
    with pytest.raises(ArtifactError, match=rf"heads\.{llm}\.ainv: malformed \(no 'sha256'\)"):
        Manifest.read(tmp_path)
    data = _shipped_json()
    data["cost_scale_usd"] = "cheap"
    (tmp_path / MANIFEST).write_bytes(files.dump_json(data))
    with pytest.raises(ArtifactError, match=r"cost_scale_usd: malformed \(expected a number\)"):
        Manifest.read(tmp_path)


def test_pool_changes_build_new_manifests(tmp_path):
    shutil.copy(shipped_artifacts_dir() / MANIFEST, tmp_path / MANIFEST)
    m = Manifest.read(tmp_path)
    llm = next(iter(m.heads))
    cold = ColdEntry(prior_quality=0.9, prior_response_tokens=40.0, explore_share=0.05)
    changed = m.with_cold(llm, cold).with_history("add-llm", llm, cold=True)
    assert llm in m.heads and llm not in changed.heads  # the original is unchanged
    changed.write(tmp_path)
    data = json.loads((tmp_path / MANIFEST).read_text())
    assert data["format"] == FORMAT
    assert data["cold"][llm] == {"prior_quality": 0.9, "prior_response_tokens": 40.0, "explore_share": 0.05}
    assert [h["op"] for h in data["history"]] == ["add-llm"]
    back = Manifest.read(tmp_path).without(llm)
    assert "cold" in json.loads(back.to_bytes())  # once written, an emptied map stays (as before)
    assert back.with_heads(llm, m.heads[llm]).heads[llm] == m.heads[llm]
