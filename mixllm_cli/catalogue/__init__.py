"""The LLM catalogue (`models.yaml`): validate, load, and save it atomically.

The catalogue is the single place that names the LLMs a router can choose from and the figures
the decision needs (prices, time to first token, throughput, parallel slots). Nothing else in
the code hard-codes an LLM identity.

Only `id` and the two prices are required; the other figures have documented defaults
(`checks.DEFAULTS`, docs/CATALOGUE.md), and an `LLM` remembers which fields its entry states, so
saving writes back only those. Validation reports every problem at once, one line each (`models.yaml: llms[2].ttft_ms: must be
> 0 (got -5)`), so a user fixes a file in one pass instead of one error per run.

Modules: `checks` (the field and document checks), `model` (`LLM`, `Catalogue`, `parse_catalogue`),
`yaml_io` (load, dump, save, and the line of each field for error messages).
"""

from __future__ import annotations

from .checks import (
    CATALOGUE_VERSION,
    DEFAULTED_FIELDS,
    DEFAULTS,
    ID_PATTERN,
    LLM_FIELDS,
    REQUIRED_FIELDS,
    SOURCE_DEFAULT,
    SOURCE_KEYS,
    SOURCE_NOT_GIVEN,
    UPSTREAM_FIELDS,
    upstream_problems,
)
from .model import LLM, Catalogue, parse_catalogue, with_llm, without_llm
from .yaml_io import dump_catalogue, load_catalogue, loads_catalogue, save_catalogue

__all__ = [
    "CATALOGUE_VERSION",
    "DEFAULTED_FIELDS",
    "DEFAULTS",
    "ID_PATTERN",
    "LLM",
    "LLM_FIELDS",
    "REQUIRED_FIELDS",
    "SOURCE_DEFAULT",
    "SOURCE_KEYS",
    "SOURCE_NOT_GIVEN",
    "UPSTREAM_FIELDS",
    "Catalogue",
    "dump_catalogue",
    "load_catalogue",
    "loads_catalogue",
    "parse_catalogue",
    "save_catalogue",
    "upstream_problems",
    "with_llm",
    "without_llm",
]
