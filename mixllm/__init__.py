"""mixllm: route each query to the LLM that answers it best for its cost and waiting time.

The Python API of the `mixllm` command (docs/API.md has the whole reference)::

    import mixllm

    with mixllm.load() as router:                      # the default home, or load(home="path")
        d = router.route("Write a haiku about rain", budget="low")
        print(d.choice, d.decision_id)                   # the LLM to call, and the id for feedback
        for c in d.candidates:                           # every LLM with its predictions
            print(c.llm, c.quality, c.cost_usd, c.wait_ms, c.score)
        router.feedback(d, quality=0.9, response_tokens=42, latency_ms=1800)
        decisions = router.route(["first query", "second query"], budget="high")   # a list
        answer = router.ask("Write a haiku about rain", on_delta=print)  # routed, then the LLM's answer

    report = mixllm.evaluate("test.jsonl")              # what `mixllm evaluate --json` prints

Public names (`__all__`): `Router` and `load` (load a home's router), `evaluate`, the results
`Decision`, `Candidate`, `FeedbackResult` and `Answer`, and the error hierarchy: every failure the
user can act on is a `MixLLMError` (`UsageError`, `DataError`, `CatalogueError`, `UnknownLLMError`,
`ArtifactError`, `FeedbackError`, `UnknownDecisionError`, `StoreError`, `UpstreamError`); an
argument of the wrong type is a `TypeError`.

`import mixllm` is instant: each name is imported on first use (PEP 562), and numpy and the
encoder runtime only when a router is loaded.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from mixllm_cli import __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time `__getattr__` imports on first use
    from mixllm_cli.api import Router as Router
    from mixllm_cli.api import evaluate as evaluate
    from mixllm_cli.api import load as load
    from mixllm_cli.asking import Answer as Answer
    from mixllm_cli.errors import ArtifactError as ArtifactError
    from mixllm_cli.errors import CatalogueError as CatalogueError
    from mixllm_cli.errors import DataError as DataError
    from mixllm_cli.errors import FeedbackError as FeedbackError
    from mixllm_cli.errors import MixLLMError as MixLLMError
    from mixllm_cli.errors import StoreError as StoreError
    from mixllm_cli.errors import UnknownDecisionError as UnknownDecisionError
    from mixllm_cli.errors import UnknownLLMError as UnknownLLMError
    from mixllm_cli.errors import UsageError as UsageError
    from mixllm_cli.learning.feedback import FeedbackResult as FeedbackResult
    from mixllm_cli.routing.results import Candidate as Candidate
    from mixllm_cli.routing.results import Decision as Decision
    from mixllm_cli.upstream import UpstreamError as UpstreamError

__all__ = [  # noqa: RUF022 - grouped by use, as the docstring lists them
    "__version__",
    # load a router, route, feedback, evaluate
    "Router", "load", "evaluate",
    # what routing and feedback return
    "Decision", "Candidate", "FeedbackResult", "Answer",
    # the errors: every failure the user can act on is a MixLLMError
    "MixLLMError", "UsageError", "DataError", "CatalogueError", "UnknownLLMError", "ArtifactError",
    "FeedbackError", "UnknownDecisionError", "StoreError", "UpstreamError",
]

# public name → the module that defines it
_API, _ERRORS = "mixllm_cli.api", "mixllm_cli.errors"
_WHERE: dict[str, str] = {
    "Router": _API, "load": _API, "evaluate": _API,
    "Decision": "mixllm_cli.routing.results", "Candidate": "mixllm_cli.routing.results",
    "FeedbackResult": "mixllm_cli.learning.feedback", "Answer": "mixllm_cli.asking",
    **{name: _ERRORS for name in __all__ if name.endswith("Error")},
    "UpstreamError": "mixllm_cli.upstream",
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use, and keep it (so the next access is a plain lookup)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mixllm' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
