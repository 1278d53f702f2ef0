"""The README's examples, run as written.

The examples are read from README.md itself, so the two cannot drift: each ```bash block runs in
README order, in one working folder holding what a fresh clone has (`examples/`, `data/`,
`tests/fake_openai.py`) and one home, like a new user following the README top to bottom, with
`mixllm` and `python` this interpreter. A line is not run only when `NOT_RUN` says why (a server
that runs until stopped, a PostgreSQL host, the install itself, a training job of minutes); every
`mixllm` command on such a line is still parsed by the real command-line parser, so an unknown
command, option or value fails here. The harness changes two things, both named where they happen:
the fake provider's port (8765 in the README) becomes a free one, so two test runs can share the
machine, and after a line that starts that provider in the background the script waits until it
listens (a user's shell has seconds between the two lines).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Lines not run, by a regex on the (continuation-joined) line, with the reason.
NOT_RUN = {
    r"-m pytest": "the test command itself: CI's .ci/run runs it word for word",
    r"^python -m pip install": "the install: CI's .ci/run runs it word for word on a fresh clone",
    r"mixllm serve\b": "a server that runs until stopped: test_server.py and test_openai_endpoint.py serve these requests",
    r"^curl ": "needs the server of the line above",
    r"^createdb |MIXLLM_STORE=postgresql://mixllm@db\.internal": "needs the PostgreSQL host db.internal",
    r"--install-completion": "writes to the user's shell start-up files",
    r"^mixllm train-offline data/routerbench/train\.jsonl": "trains on 2,225 RouterBench queries (minutes on 2 cores); "
                                                           "the walk-through below runs train-offline as written",
    r"--baselines-from data/routerbench/train\.jsonl": "encodes 2,225 training queries and fits nine baselines "
                                                       "(minutes); test_sweep.py runs --baselines-from on small data",
}
# Part of a line that is run: the install before `&&` is CI's (first README line).
INSTALL_PREFIX = "python -m pip install -e . && "


def readme_blocks(lang: str) -> list[tuple[int, str]]:
    """(first line number, text) of each ```lang block of the README."""
    blocks, current, start = [], None, 0
    for no, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if current is None and line.strip() == f"```{lang}":
            current, start = [], no + 1
        elif current is not None and line.strip() == "```":
            blocks.append((start, "\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def logical_lines(text: str) -> list[str]:
    """The block's lines with backslash continuations joined."""
    out: list[str] = []
    for line in text.splitlines():
        if out and out[-1].endswith("\\"):
            out[-1] = out[-1][:-1] + " " + line.strip()
        else:
            out.append(line)
    return out


def not_run_reason(line: str) -> str | None:
    for pattern, reason in NOT_RUN.items():
        if re.search(pattern, line.strip()):
            return reason
    return None


def mixllm_invocations(line: str) -> list[list[str]]:
    """The argument lists of the `mixllm` commands on a shell line (split at | && ; & > <)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    found, current = [], []
    for token in [*lexer, ";"]:
        if token and set(token) <= set("|&;<>()"):
            if current and current[0] == "mixllm":
                found.append(current[1:])
            current = []
        else:
            current.append(token)
    return found


def parse_only(args: list[str]) -> None:
    """Parse one `mixllm` command line with the real parser, invoking nothing: an unknown
    command, option or a value of the wrong type raises."""
    import click
    import typer.main

    from mixllm_cli.cli import app

    group = typer.main.get_command(app)
    if args and args[0].startswith("--"):  # a root option (--show-completion, --version)
        assert args[0] in {o for p in group.params for o in p.opts}, args
        return
    with group.make_context("mixllm", list(args), resilient_parsing=False) as ctx:
        name, cmd, rest = group.resolve_command(ctx, list(args))
        assert cmd is not None, args
        try:
            cmd.make_context(name, rest, parent=ctx)
        except click.exceptions.Exit:
            pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A working folder like a fresh clone's, a PATH whose `mixllm` and `python` are this
    interpreter, a free port for the fake provider, and one home for every block."""
    work = tmp_path_factory.mktemp("readme")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    shutil.copytree(ROOT / "examples", work / "examples")
    models = work / "examples" / "models.yaml"
    models.write_text(models.read_text().replace("127.0.0.1:8765", f"127.0.0.1:{port}"))
    (work / "data").symlink_to(ROOT / "data")
    (work / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "fake_openai.py", work / "tests" / "fake_openai.py")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    for name, run in (("mixllm", f'"{sys.executable}" -m mixllm_cli'), ("python", f'"{sys.executable}"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {run} "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXLLM_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", HOME=str(work / "user"), MIXLLM_HOME=str(work / "home"),
               MIXLLM_PROGRESS="off", PYTHONPATH=str(ROOT))
    (work / "user").mkdir()
    return {"work": work, "env": env, "port": port}


def script_of(text: str, port: int) -> tuple[str, list[tuple[str, str]]]:
    """The block as a bash script: lines NOT_RUN become comments; returns (script, not run)."""
    lines, skipped = ["set -e -o pipefail"], []
    for line in logical_lines(text):
        if line.startswith(INSTALL_PREFIX):
            skipped.append((INSTALL_PREFIX, NOT_RUN[r"^python -m pip install"]))
            line = line[len(INSTALL_PREFIX):]
        reason = not_run_reason(line)
        if reason is not None:
            skipped.append((line, reason))
            lines.append(f": not run: {shlex.quote(line)}")
            continue
        line = line.replace("--port 8765", f"--port {port}").replace("127.0.0.1:8765", f"127.0.0.1:{port}")
        lines.append(line)
        if "fake_openai.py" in line and line.split("#")[0].rstrip().endswith("&"):  # harness: wait until it listens
            lines.append(f'python -c "import socket, time\nfor _ in range(600):\n    try:\n'
                         f'        socket.create_connection((\'127.0.0.1\', {port}), 1).close(); break\n'
                         f'    except OSError: time.sleep(0.1)"')
    return "\n".join(lines) + "\n", skipped


def test_the_harness_reads_every_block_and_a_bad_command_fails_to_parse():
    assert len(readme_blocks("bash")) >= 7 and readme_blocks("python")
    assert mixllm_invocations('id=$(mixllm route "a b" --json | python -c x) && mixllm feedback "$id" --good') == [
        ["route", "a b", "--json"], ["feedback", "$id", "--good"]]
    parse_only(["route", "hello", "--budget", "low"])
    for bad in (["rout", "hello"], ["route", "hello", "--budgets", "low"], ["evaluate", "x", "--lambdas", "many"]):
        with pytest.raises(Exception) as info:
            parse_only(bad)
        assert type(info.value).__name__ in ("UsageError", "NoSuchOption", "BadParameter", "AssertionError")


def test_every_readme_command_parses():
    """Every `mixllm` command in a bash block, run here or not, is one the CLI accepts."""
    seen = 0
    for _, text in readme_blocks("bash"):
        for line in logical_lines(text):
            for args in mixllm_invocations(line):
                parse_only(args)
                seen += 1
    assert seen >= 40


def test_the_readme_bash_blocks_run_as_written_top_to_bottom(world):
    """Each bash block, in README order, in one folder and one home: exit 0, or the test names the
    block and shows its output."""
    ran = 0
    for start, text in readme_blocks("bash"):
        script, _ = script_of(text, world["port"])
        if all(line.startswith(": not run:") or line == "set -e -o pipefail" for line in script.splitlines()):
            continue
        proc = subprocess.run(["bash", "-c", script], cwd=world["work"], env=world["env"], capture_output=True,
                              text=True, timeout=1800, check=False)
        assert proc.returncode == 0, (f"README.md:{start}: the block exited {proc.returncode}\n"
                                      f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        ran += 1
    assert ran >= 6
    home = world["work"] / "home"
    assert (home / "state.sqlite3").is_file()  # routed and learned from feedback in the README's home
    assert (world["work"] / "my-router" / "models.yaml").is_file()  # the walk-through's own home
    decisions = (world["work"] / "decisions.jsonl").read_text().splitlines()
    assert len(decisions) == len((ROOT / "examples" / "queries.jsonl").read_text().splitlines())


def test_the_python_api_example_runs_and_prints_what_its_comment_says(world):
    """The `import mixllm` block runs as written, and its last line prints the number its
    comment claims (the medium budget's % of the best LLM's quality)."""
    (text,) = [t for _, t in readme_blocks("python") if "import mixllm" in t]
    claim = re.search(r"medium budget: ([0-9.]+)", text)
    assert claim is not None
    home = world["work"] / "shipped-home"  # the claim is the shipped default's: a home no block has changed
    home.mkdir(exist_ok=True)
    if (world["work"] / "home" / "cache").is_dir() and not (home / "cache").exists():
        (home / "cache").symlink_to(world["work"] / "home" / "cache")  # embeddings only (keyed by encoder and text)
    proc = subprocess.run([sys.executable, "-c", text], cwd=world["work"], env={**world["env"], "MIXLLM_HOME": str(home)},
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == claim.group(1)


def test_the_other_readme_blocks_are_well_formed():
    """The Python blocks not run (they need a running server) compile; the JSON example is JSON,
    and the YAML example is a catalogue mixllm loads."""
    import yaml

    from mixllm_cli.catalogue import load_catalogue

    for _, text in readme_blocks("python"):
        compile(text, "README.md", "exec")
    for _, text in readme_blocks("json"):
        row = json.loads(text)
        assert set(row) >= {"id", "query", "outcomes"}
    (yml,) = [t for _, t in readme_blocks("yaml")]
    assert yaml.safe_load(yml)["llms"]
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"readme-catalogue-{os.getpid()}.yaml"
    path.write_text(yml)
    try:
        assert [llm.id for llm in load_catalogue(path).llms] == ["gpt-4-1106-preview"]
    finally:
        path.unlink()
