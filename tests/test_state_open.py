"""Several processes creating the state database at once must all get it (a real race: SQLite
answers some of them "database is locked" without waiting while WAL mode and the migrations are
set up)."""

import subprocess
import sys
import time

from mixllm_cli.state.schema import steps


def test_parallel_first_opens_all_succeed(tmp_path):
    for trial in range(4):
        db = tmp_path / f"s{trial}.sqlite3"
        start = time.time() + 1.0  # every process opens at the same instant
        code = (f"import time; from mixllm_cli.state.sqlite import StateStore; s = StateStore({str(db)!r}); "
                f"time.sleep(max(0.0, {start} - time.time())); "
                "s.conn; print(s.conn.execute('PRAGMA user_version').fetchone()[0])")
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(8)]
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            assert out.strip() == str(len(steps("sqlite")))  # every process sees the fully migrated schema
