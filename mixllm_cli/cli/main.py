"""Running the app: known errors become one `Error:` line and an exit code; bugs raise."""

from __future__ import annotations

import os
import sys

from ..errors import MixLLMError
from .app import app

# Modules of the optional extras (pyproject.toml): a command that needs a missing one says which
# extra to install, in one line, instead of a traceback.
OPTIONAL_MODULES = {"sklearn": "train", "matplotlib": "plot", "onnx": "build", "safetensors": "build",
                    "fastapi": "serve", "uvicorn": "serve", "httpx": "collect", "psycopg": "serve",
                    "prometheus_client": "serve", "pydantic": "serve", "orjson": "serve"}


def _option(param: str) -> str:
    """A library parameter as the command line spells it: `max_wait_s` is `--max-wait-s`."""
    return "--" + param.replace("_", "-")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` and return the exit code; known errors become `Error:` lines."""
    try:
        app(args=argv, prog_name="mixllm", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except MixLLMError as exc:
        if os.environ.get("MIXLLM_DEBUG"):
            raise
        for line in exc.render(_option).splitlines() or [type(exc).__name__]:
            sys.stderr.write(f"Error: {line}\n")
        return exc.exit_code
    except ModuleNotFoundError as exc:
        extra = OPTIONAL_MODULES.get((exc.name or "").split(".")[0])
        if extra is None or os.environ.get("MIXLLM_DEBUG"):
            raise
        sys.stderr.write(f"Error: this needs the '{extra}' extra ({exc.name} is not installed): "
                         f"python -m pip install -e '.[{extra}]'\n")
        return 1
    except BrokenPipeError:
        # `mixllm route --jsonl big.jsonl | head`: the reader left; exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        # The file system said no (a --home that is a file, a read-only or full disk, a missing
        # parent): one line naming the path; every write is atomic, so nothing is left half-written.
        if os.environ.get("MIXLLM_DEBUG"):
            raise
        path = exc.filename if exc.filename is not None else ""
        what = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, (FileExistsError, NotADirectoryError)) and os.path.isfile(path):
            what = "a file is in the way where mixllm needs a folder"
        sys.stderr.write(f"Error: {path}: {what} (check --home / $MIXLLM_HOME and the disk)\n" if path
                         else f"Error: {what}\n")
        return 1
    return 0


def main() -> None:
    """Console-script entry point."""
    # numpy's OpenBLAS starts a thread per core when numpy is imported, and those threads
    # busy-wait after every product. Ours are small (a batch of queries times the heads), so the
    # extra thread only burns CPU the encoder needs: on 2 cores it cost `mixllm serve` 1.5 ms of
    # CPU per routed query (docs/SERVE.md). Set OPENBLAS_NUM_THREADS yourself to override.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(run())

