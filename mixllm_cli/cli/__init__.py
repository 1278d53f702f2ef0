"""The `mixllm` command: one thin client of the library.

Each command parses its options, calls one library function and renders the result. Known
failures (`MixLLMError`) become one `Error: ...` line per problem on stderr and exit 1 (2 for
usage errors); anything else is a bug and raises (set MIXLLM_DEBUG=1 for the full traceback
of known errors too).
"""

# Each module registers its commands on `app`; --help lists them in this order.
# isort: off
from . import route, ask, feedback, evaluate, train, serve, collect, export, keys  # noqa: F401
# isort: on
from .app import app
from .main import main, run

__all__ = ["app", "main", "run"]
