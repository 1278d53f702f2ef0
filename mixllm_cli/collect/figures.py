"""Measured latency figures into the catalogue (`mixllm collect --update-catalogue`).

The routing decision's waiting-time model reads each LLM's `ttft_ms` and `output_tokens_per_s`;
a collect run measures both on real calls, so it can replace guessed figures with measured ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..catalogue import Catalogue
    from .runner import LLMSummary

MIN_CALLS = 5  # fewer streamed answers than this measure nothing worth writing down


def update_latency_figures(path: str | os.PathLike[str], base: Catalogue,
                           summaries: Iterable[LLMSummary]) -> list[str]:
    """Write each measured LLM's median time to first token and its output tokens/s into the
    catalogue at `path` (loaded from there when it exists, else started from `base`), with a source
    saying where they come from. Returns one line per LLM updated or left alone."""
    from ..catalogue import Catalogue, load_catalogue, save_catalogue

    catalogue = load_catalogue(path) if Path(path).is_file() else base
    day = time.strftime("%Y-%m-%d")
    notes: list[str] = []
    entries = {llm.id: llm for llm in catalogue.llms}
    for s in summaries:
        if s.llm not in entries:
            notes.append(f"{s.llm}: not in {path}; figures not written")
            continue
        if s.ttft_ms_p50 is None or s.output_tokens_per_s is None or s.outcomes < MIN_CALLS \
                or s.ttft_ms_p50 <= 0 or s.output_tokens_per_s <= 0:
            notes.append(f"{s.llm}: too few streamed answers with usage to measure (need {MIN_CALLS}); left as is")
            continue
        source = f"measured by mixllm collect on {s.outcomes} calls, {day} (median)"
        figures: dict[str, Any] = {"ttft_ms": round(s.ttft_ms_p50, 1),
                                   "output_tokens_per_s": round(s.output_tokens_per_s, 1)}
        llm = entries[s.llm]
        update = getattr(llm, "updated", None)  # the lenient catalogue's way: marks the figures as stated
        if update is not None:
            new = update(sources={k: source for k in figures}, **figures)
        else:
            new = replace(llm, **figures, sources=tuple({**dict(llm.sources), **{k: source for k in figures}}.items()))
        entries[s.llm] = new
        notes.append(f"{s.llm}: ttft_ms {figures['ttft_ms']:g}, output_tokens_per_s {figures['output_tokens_per_s']:g}")
    save_catalogue(Catalogue(tuple(entries[llm.id] for llm in catalogue.llms)), path)
    return notes
