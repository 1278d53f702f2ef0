"""Start-up: `mixllm --help` and a cold `mixllm route`, old build against new, alternating in one run.

    /root/.pyenv/versions/3.11.7/bin/python benchmarks/bench_cold_start.py [--old /work/old18] [--n 15]
        [--home DIR] [--query "Explain TCP slow start"]

Run it with the interpreter itself, not a version-manager shim (pyenv's adds ~0.1 s to every
process). Each build runs as `python -m mixllm_cli` with PYTHONPATH set to its tree, from a
neutral working directory. Prints the median and the minimum wall time of N fresh processes for:

- `--help`;
- `route QUERY --no-queue`, first run in a fresh home with an empty per-user encoder cache (a new
  empty home each time, or a new copy of --home without its cache/): what a new user or a new
  container pays once, including writing the encoder cache (docs/STARTUP.md);
- `route QUERY --no-queue`, later runs in a home that has routed before (the steady state).

Old and new alternate within each round, so a change in the machine's load hits both alike.
Before timing, both builds route the query once with --json and must give the same output.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(build: Path, args: list[str], home: Path) -> tuple[float, str]:
    # the per-user encoder cache lives beside each home here, so "a fresh home" is also a fresh machine
    env = dict(os.environ, PYTHONPATH=str(build), MIXLLM_HOME=str(home), MIXLLM_PROGRESS="off",
               MIXLLM_ENCODER_CACHE=str(home / "user-cache" / "encoder"))
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mixllm_cli", *args], env=env, cwd=tempfile.gettempdir(),
                         capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{build}: mixllm {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return dt, out.stdout


def fresh_home(scratch: Path, source: Path | None) -> Path:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=scratch))
    if source is not None:
        shutil.copytree(source, home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("cache"))
    return home


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=Path, default=Path("/work/old18"))
    ap.add_argument("--new", type=Path, default=ROOT)
    ap.add_argument("--n", type=int, default=15, help="processes per measurement and build")
    ap.add_argument("--home", type=Path, default=None, help="a home to copy (default: an empty one)")
    ap.add_argument("--query", default="Explain TCP slow start")
    args = ap.parse_args()
    builds = {"old": args.old.resolve(), "new": args.new.resolve()}
    route = ["route", args.query, "--no-queue"]
    with tempfile.TemporaryDirectory(prefix="mixllm-cold-") as tmp:
        scratch = Path(tmp)
        steady = {name: fresh_home(scratch, args.home) for name in builds}
        answers = {name: run(build, [*route, "--json"], steady[name])[1] for name, build in builds.items()}
        if answers["old"] != answers["new"]:
            raise SystemExit(f"the builds route differently:\nold {answers['old']}\nnew {answers['new']}")
        for name, build in builds.items():  # page cache, .pyc files, and the steady homes' caches
            run(build, ["--help"], steady[name])
            run(build, route, steady[name])
        times: dict[tuple[str, str], list[float]] = {}
        for i in range(args.n):
            order = list(builds.items()) if i % 2 == 0 else list(builds.items())[::-1]
            for name, build in order:
                times.setdefault(("--help", name), []).append(run(build, ["--help"], steady[name])[0])
                home = fresh_home(scratch, args.home)
                times.setdefault(("route, first run in a fresh home", name), []).append(run(build, route, home)[0])
                shutil.rmtree(home, ignore_errors=True)
                times.setdefault(("route, later runs", name), []).append(run(build, route, steady[name])[0])
    print(f"python {sys.executable}; {args.n} processes each; old {builds['old']}, new {builds['new']}")
    print(f"{'':34} {'old median':>10} {'new median':>10} {'old min':>8} {'new min':>8}")
    for what in dict.fromkeys(k[0] for k in times):
        old, new = times[(what, "old")], times[(what, "new")]
        print(f"{what:34} {statistics.median(old):10.3f} {statistics.median(new):10.3f} {min(old):8.3f} {min(new):8.3f}")


if __name__ == "__main__":
    main()
