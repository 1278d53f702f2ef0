"""Paths, atomic writes and the publish/recover dance of artifact sets."""

import os
from pathlib import Path

import pytest

from mixllm_cli import files, manifest, paths


def test_home_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MIXLLM_HOME", str(tmp_path / "env"))
    assert paths.home_dir(tmp_path / "flag") == tmp_path / "flag"
    assert paths.home_dir() == tmp_path / "env"
    monkeypatch.delenv("MIXLLM_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and os.uname().sysname != "Darwin":
        assert paths.home_dir() == tmp_path / "xdg" / "mixllm"


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    files.atomic_write_bytes(target, b"old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        files.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left behind


def test_atomic_write_makes_ordinary_permissions(tmp_path):
    files.atomic_write_bytes(tmp_path / "f", b"x")
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~files._umask()


def _make_set(path: Path, tag: str) -> None:
    path.mkdir(parents=True)
    (path / manifest.MANIFEST).write_text(tag)


def test_publish_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "artifacts"
    _make_set(target, "v1")
    staging = files.staging_dir(target)
    (staging / manifest.MANIFEST).write_text("v2")
    files.publish_dir(staging, target)
    assert (target / manifest.MANIFEST).read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts"]


def test_a_crash_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    target = tmp_path / "home" / "artifacts"
    _make_set(target, "v1")
    staging = files.staging_dir(target)
    (staging / manifest.MANIFEST).write_text("v2")
    real = os.replace
    calls = []

    def crash_second(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies after moving the old set aside
        real(src, dst)

    monkeypatch.setattr(os, "replace", crash_second)
    with pytest.raises(KeyboardInterrupt):
        files.publish_dir(staging, target)
    monkeypatch.setattr(os, "replace", real)
    assert not target.exists()
    assert paths.active_artifacts_dir(tmp_path / "home") == target
    assert (target / manifest.MANIFEST).read_text() == "v1"
