"""`evaluate --sweep --plot out.png`: every policy's hull, the single LLMs as points, the oracle.

matplotlib is an optional extra (`pip install 'mixllm[plot]'`); it is imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError


def sweep_plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("needs matplotlib (pip install 'mixllm[plot]')", param="plot") from None
    fig, ax = plt.subplots(figsize=(9, 6))
    for cv in report["curves"]:
        pts = cv["points"]
        if cv["name"].startswith("always "):
            ax.plot([pts[0][0]], [pts[0][1]], "k.", ms=6)
            ax.annotate(cv["name"][7:], pts[0], fontsize=6)
            continue
        hull = cv["hull"] + [[max(1.0, cv["hull"][-1][0]), cv["hull"][-1][1]]]
        style = {"lw": 2.5} if cv["name"].startswith("mixllm") else {"lw": 1}
        ax.plot([h[0] for h in hull], [h[1] for h in hull], label=f"{cv['name']} (AIQ {100 * cv['aiq']:.1f})",
                **style)
    for name, p in report["presets"].items():
        ax.plot([p["cost_share"]], [p["quality_share"]], "r*", ms=9)
        ax.annotate(name, (p["cost_share"], p["quality_share"]), fontsize=7, color="red")
    ax.set_xlim(0, 1.05)
    ax.set_xlabel(f"cost share of always-{report['best_llm']}")
    ax.set_ylabel(f"quality share of always-{report['best_llm']}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
