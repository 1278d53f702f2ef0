"""`mixllm tags`: a query's tags and domain under the active artifact set (for debugging)."""


from __future__ import annotations

from typing import Any


def tag_query(query: str, home: Any = None) -> dict[str, Any]:
    """`mixllm tags`: derive a query's tags and find its domain with the active artifact set."""
    from ..artifacts import load_artifact_set
    from ..core.encoder import Encoder
    from ..core.tagging import describe
    from ..paths import active_artifacts_dir
    from .router import check_query

    text = check_query(query)
    arts = load_artifact_set(active_artifacts_dir(home), llm_ids=[])
    encoder = Encoder.from_dir(arts.encoder_dir)
    out = describe(text, encoder.encode([text]).embeddings[0], lambda t: encoder.encode(t).embeddings, arts.tag_model)
    out["artifacts"] = str(arts.path)
    return out
