"""One error hierarchy for the library; the CLI maps it to `Error: ...` and an exit code.

Exit codes: 0 ok, 1 a domain error (any `MixLLMError`), 2 a usage error (bad flag or argument).
Core modules raise these and never print or exit.
"""

from __future__ import annotations

from collections.abc import Callable

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class MixLLMError(Exception):
    """Base class: a failure the user can act on. The message is one line.

    `param` names the parameter at fault (`"budget"`, or several for a conflict) in the library's
    words; each client spells it its own way (the CLI as `--budget`, the server as `budget` and in
    the error's `param` field). `str(exc)` is the library's spelling: `budget: unknown budget ...`.
    """

    exit_code = EXIT_ERROR

    def __init__(self, message: str = "", *, param: str | tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.params: tuple[str, ...] = (param,) if isinstance(param, str) else tuple(param or ())

    @property
    def param(self) -> str | None:
        """The first parameter at fault, if any."""
        return self.params[0] if self.params else None

    def render(self, spell: Callable[[str], str] = str) -> str:
        """The message prefixed with the parameters at fault, each spelled by `spell`."""
        if not self.params:
            return self.message
        return f"{' and '.join(spell(p) for p in self.params)}: {self.message}"

    def __str__(self) -> str:
        return self.render()


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


class UnknownDecisionError(FeedbackError):
    """Feedback names a decision id the state does not hold."""


class StoreError(MixLLMError):
    """The state store is unreachable or failed (cannot connect, corrupt, stayed locked)."""


def where(path: object, line: int | None = None, field: str | None = None) -> str:
    """Format a location prefix: `file:line: field: ` (parts that are None are left out)."""
    out = str(path)
    if line is not None:
        out += f":{line}"
    if field:
        out += f": {field}"
    return out
