"""The encoder's thread count follows the CPUs the process may use: affinity and cgroup quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixllm_cli.core import encoder
from mixllm_cli.core.encoder import MAX_THREADS, _spinning, _thread_count, cgroup_cpu_limit, usable_cpus
from mixllm_cli.errors import UsageError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture()
def cgroups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cgroup tree and a /proc/self/cgroup at the root of it, used by default."""
    root = tmp_path / "cgroup"
    root.mkdir()
    monkeypatch.setattr(encoder, "CGROUP_ROOT", root)
    monkeypatch.setattr(encoder, "PROC_CGROUP", write(tmp_path / "proc_cgroup", "0::/\n"))
    monkeypatch.delenv("MIXLLM_THREADS", raising=False)
    return root


def cpus(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(encoder.os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)


@pytest.mark.parametrize(("allowed", "threads"), [(1, 1), (2, 2), (3, 3), (16, MAX_THREADS)])
def test_threads_follow_the_affinity_mask(cgroups, monkeypatch, allowed, threads):
    cpus(monkeypatch, allowed)
    assert usable_cpus() == allowed
    assert _thread_count() == threads


@pytest.mark.parametrize(("cpu_max", "limit"), [("max 100000\n", None), ("100000 100000\n", 1),
                                                 ("150000 100000\n", 2), ("50000 100000\n", 1),
                                                 ("800000 100000\n", 8), ("garbage\n", None)])
def test_cgroup_v2_quota(cgroups, monkeypatch, cpu_max, limit):
    write(cgroups / "cpu.max", cpu_max)
    assert cgroup_cpu_limit() == limit
    cpus(monkeypatch, 16)
    assert usable_cpus() == (16 if limit is None else limit)
    assert _thread_count() == min(MAX_THREADS, 16 if limit is None else limit)


def test_a_parent_cgroups_quota_binds_the_child(cgroups, tmp_path, monkeypatch):
    proc = write(tmp_path / "proc_nested", "0::/kubepods/pod1/box\n")
    write(cgroups / "kubepods/pod1/box/cpu.max", "max 100000\n")
    write(cgroups / "kubepods/pod1/cpu.max", "200000 100000\n")
    assert cgroup_cpu_limit(cgroups, proc) == 2
    cpus(monkeypatch, 8)
    assert usable_cpus(cgroups, proc) == 2


@pytest.mark.parametrize("mount", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_quota(cgroups, tmp_path, monkeypatch, mount):
    proc = write(tmp_path / "proc_v1", f"4:memory:/x\n3:{mount}:/\n")
    write(cgroups / mount / "cpu.cfs_period_us", "100000\n")
    quota = write(cgroups / mount / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_limit(cgroups, proc) is None
    quota.write_text("50000\n")
    assert cgroup_cpu_limit(cgroups, proc) == 1
    cpus(monkeypatch, 4)
    monkeypatch.setattr(encoder, "PROC_CGROUP", proc)
    assert _thread_count() == 1


def test_the_smaller_of_affinity_and_quota_wins(cgroups, monkeypatch):
    write(cgroups / "cpu.max", "400000 100000\n")
    cpus(monkeypatch, 2)
    assert usable_cpus() == 2


def test_no_cgroup_files_means_no_limit(tmp_path, monkeypatch):
    cpus(monkeypatch, 3)
    assert cgroup_cpu_limit(tmp_path / "nothing", tmp_path / "no_proc_file") is None
    assert usable_cpus(tmp_path / "nothing", tmp_path / "no_proc_file") == 3


def test_mixllm_threads_overrides(cgroups, monkeypatch):
    write(cgroups / "cpu.max", "100000 100000\n")
    monkeypatch.setenv("MIXLLM_THREADS", "3")
    assert _thread_count() == 3
    for bad in ("0", "-2", "many"):
        monkeypatch.setenv("MIXLLM_THREADS", bad)
        with pytest.raises(UsageError, match="MIXLLM_THREADS"):
            _thread_count()


def test_spinning_is_off_unless_asked_for(monkeypatch):
    monkeypatch.delenv("MIXLLM_ENCODER_SPIN", raising=False)
    assert not _spinning()
    monkeypatch.setenv("MIXLLM_ENCODER_SPIN", "1")
    assert _spinning()
    monkeypatch.setenv("MIXLLM_ENCODER_SPIN", "0")
    assert not _spinning()
