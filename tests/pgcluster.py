"""A throwaway PostgreSQL cluster on a loopback port, in a temp dir, for tests and benchmarks.

initdb and postgres refuse to run as root, so when the euid is 0 they run as the `postgres`
system user (`runuser -u postgres --`) in a temp dir that user owns. Authentication is `trust`
on 127.0.0.1 only; the cluster is stopped (`-m immediate`) and its dir removed on `stop()`.

Durability: the server runs with PostgreSQL's production defaults (fsync, synchronous_commit and
full_page_writes on), so the tests that kill a replica or stop the server exercise the settings
operators run (docs/SERVE.md). On this 2-core box they cost nothing measurable (the PostgreSQL
tests took the same time, within noise, as with all three off). MIXLLM_PG_DURABLE=0 turns them
off (a slow disk); initdb's own `--no-sync` only skips syncing the template files at creation.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class ClusterUnavailable(RuntimeError):
    """PostgreSQL binaries are missing or the server did not start; the message says why."""


def find_bin_dir() -> Path:
    """The directory holding initdb/pg_ctl/postgres: $MIXLLM_PG_BIN, else the newest Debian layout,
    else PATH."""
    env = os.environ.get("MIXLLM_PG_BIN")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    raise ClusterUnavailable("PostgreSQL binaries not found (no initdb/pg_ctl in /usr/lib/postgresql/*/bin or on "
                             "PATH); install them with `apt-get install -y postgresql` or set MIXLLM_PG_BIN")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, durable: bool | None = None) -> None:
        """`durable`: fsync, synchronous_commit and full_page_writes on (None: on unless MIXLLM_PG_DURABLE=0)."""
        self.durable = os.environ.get("MIXLLM_PG_DURABLE", "1") != "0" if durable is None else durable
        self.bin = find_bin_dir()
        self.prefix: list[str] = []
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterUnavailable("running as root and there is no `postgres` user to run the server as") \
                    from None
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="mixllm-pg-"))
        if owner is not None:
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self.port = _free_port()
        self.url = f"postgresql://mixllm@127.0.0.1:{self.port}/mixllm"

    def _run(self, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run([*self.prefix, *args], check=False, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise ClusterUnavailable(f"{Path(args[0]).name} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")

    def start(self) -> Cluster:
        data = self.dir / "data"
        try:
            self._run(str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "mixllm", "-E", "UTF8",
                      "--no-sync", "--no-instructions")
            durability = ("-c fsync=on -c synchronous_commit=on -c full_page_writes=on" if self.durable
                          else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
                    f"{durability} -c max_connections=200")
            self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(self.dir / "log"), "-w",
                      "-t", "60", "start")
            self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "mixllm", "mixllm")
        except (ClusterUnavailable, OSError, subprocess.TimeoutExpired) as exc:
            self.stop()
            raise ClusterUnavailable(str(exc)) from None
        return self

    def stop(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                            "-w", "stop"], check=False, capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
