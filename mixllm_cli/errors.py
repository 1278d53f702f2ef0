"""One error hierarchy for the library; the CLI maps it to `Error: ...` and an exit code.

Exit codes: 0 ok, 1 a domain error (any `MixLLMError`), 2 a usage error (bad flag or argument).
Core modules raise these and never print or exit.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class MixLLMError(Exception):
    """Base class: a failure the user can act on. The message is one line."""

    exit_code = EXIT_ERROR


class UsageError(MixLLMError):
    """A command-line argument is wrong (unknown budget, conflicting flags)."""

    exit_code = EXIT_USAGE


class CatalogueError(MixLLMError):
    """The LLM catalogue (models.yaml) is malformed or inconsistent."""


class UnknownLLMError(MixLLMError):
    """An LLM id that the catalogue does not hold."""


class ArtifactError(MixLLMError):
    """An artifact set (encoder, heads, manifest) is missing, corrupt or does not match."""


class DataError(MixLLMError):
    """A routing-dataset or query file is malformed."""


class FeedbackError(MixLLMError):
    """Feedback that cannot be applied (unknown decision, out-of-range value)."""


def where(path: object, line: int | None = None, field: str | None = None) -> str:
    """Format a location prefix: `file:line: field: ` (parts that are None are left out)."""
    out = str(path)
    if line is not None:
        out += f":{line}"
    if field:
        out += f": {field}"
    return out
