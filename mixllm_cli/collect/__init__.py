"""`mixllm collect`: build a routing dataset by calling your own LLMs on your prompts and grading
their answers (docs/COLLECT.md).

Modules: `prompts` (the prompt file), `client` (one streamed call and its failures), `limits`
(spend cap, pace, backoff), `journal` (the crash-safe append-only record of answers and grades),
`runner` (`collect`, the run itself), `figures` (measured latency into the catalogue), `graders`
(scoring an answer), `from_log` (logged traffic as prompts).

Nothing is imported here eagerly: `collect`, `CollectOptions` and `CollectReport` are loaded on
first use, so importing the package costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import CollectOptions, CollectProgress, CollectReport, collect

__all__ = ["CollectOptions", "CollectProgress", "CollectReport", "collect"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
