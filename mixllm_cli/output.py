"""Rendering for people (rich tables on stdout, notes on stderr) and for machines (JSON).

rich is imported inside the functions so `mixllm --help` does not pay for it.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .routing.results import Decision


def json_line(obj: Any, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


def note(message: str) -> None:
    """A message for the person at the terminal: stderr, never mixed into data."""
    sys.stderr.write(message + "\n")


def _console(stream: TextIO | None = None):
    from rich.console import Console

    stream = stream or sys.stdout
    # Piped output has no terminal width; don't wrap tables at rich's 80-column default.
    width = None if stream.isatty() else 160
    return Console(file=stream, highlight=False, soft_wrap=False, width=width)


def route_table(decision: Decision) -> None:
    from rich.table import Table

    table = Table(title=None, show_edge=False, header_style="bold")
    table.add_column("LLM")
    table.add_column("pred. quality", justify="right")
    table.add_column("pred. cost (¢)", justify="right")
    table.add_column("exp. wait (ms)", justify="right")
    table.add_column("wait penalty", justify="right")
    table.add_column("score", justify="right")
    for c in sorted(decision.candidates, key=lambda c: (not c.available, -c.score)):
        mark = "→ " if c.llm == decision.choice else "  "
        style = "bold green" if c.llm == decision.choice else ("dim" if not c.available else None)
        name = f"{mark}{c.llm}" + (" (cold)" if c.cold else "")
        score = f"{c.score:+.4f}" if c.available else "not offered"
        table.add_row(name, f"{c.quality:.3f}", f"{100 * c.cost_usd:.4f}", f"{c.wait_ms:.0f}", f"{c.penalty:.4f}", score,
                      style=style)
    console = _console()
    console.print(table)
    console.print(f"choice: [bold]{decision.choice}[/bold]")


def evaluation_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col, justify in (("policy", "left"), ("mean quality", "right"), ("total cost ($)", "right"),
                         (f"% of {report['best_llm']} quality", "right"), ("% of its cost", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    stream = "tolerance_s" in report
    if stream:
        table.add_column("answers too late", justify="right")
        table.add_column("p95 wait (s)", justify="right")
    for r in report["results"]:
        extra = [str(r["late"]), f"{r['wait_p95_s']:.1f}"] if stream else []
        table.add_row(r["policy"], f"{r['mean_quality']:.4f}", f"{r['total_cost_usd']:.4f}",
                      f"{r['quality_pct_of_best']:.2f}", f"{r['cost_pct_of_best']:.2f}", *extra)
    console = _console()
    console.print(table)


def training_summary(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold", title=f"artifact set: {report['artifacts']}")
    table.add_column("budget")
    table.add_column("λ", justify="right")
    table.add_column("target cost share", justify="right")
    table.add_column("share on train (out-of-fold)", justify="right")
    for name, p in report["presets"].items():
        table.add_row(name, f"{p['lambda']:.4g}", f"{p['target_cost_share']:.0%}", f"{p['train_cost_share']:.1%}")
    console = _console(sys.stderr)
    console.print(table)
    console.print(f"{report['rows']} queries, {len(report['llms'])} LLMs, {report['seconds']} s")
    if report.get("tags"):
        console.print(f"tag-enhanced embedding: {report['tags']['k']} domains, "
                      f"{report['tags']['seconds']['total']} s for the tag pipeline")
    # Plain lines, not rich markup: they quote the user's data (key names, LLM ids).
    for warning in report.get("warnings") or ():
        note(f"Warning: {warning}")


def tags_report(report: dict[str, Any]) -> None:
    out = sys.stdout
    out.write(f"tags: {', '.join(report['tags']) or '(none)'}\n")
    if report["domain"] is None:
        note(f"{report['artifacts']}: trained without tags (--no-tags); no domains to show")
        return
    out.write(f"domain: {report['domain']} ({report['domain_label']})\n")
    out.write(f"domains of its tags: {', '.join(str(d) for d in report['domains'])}\n")
    out.write(f"domain of its tag-enhanced embedding: {report['embedding_domain']} "
              f"(p = {report['embedding_domain_probability']:.2f})\n")


def llms_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    figures = ("input_usd_per_mtok", "output_usd_per_mtok", "ttft_ms", "output_tokens_per_s", "slots")
    for col, justify in (("LLM", "left"), ("$ in / 1M tok", "right"), ("$ out / 1M tok", "right"),
                         ("TTFT ms", "right"), ("tok/s", "right"), ("slots", "right"), ("status", "left"),
                         ("outcomes", "right"), ("heads", "left"), ("learned TTFT / tok/s (n)", "right"),
                         ("p50/p95 ms", "right"), ("in flight", "right")):
        # A figure and its "(default)" mark stay on one line.
        table.add_column(col, justify=justify, no_wrap=col in ("TTFT ms", "tok/s", "slots"))  # type: ignore[arg-type]
    endpoints = []
    for r in rows:
        status = r["status"] if r["status"] != "cold" else f"cold (explores {r['explore_share']:.0%})"
        heads = f"{r['quality_head']} / {r['length_head']}" if r["quality_head"] else "-"
        learned = (f"{r['learned_ttft_ms']:g} / {r['learned_output_tokens_per_s']:g} ({r['latency_observations']})"
                   if r["latency_observations"] else "-")
        pct = r["latency_p50_p95_ms"]
        pct_text = f"{pct[0]:.0f}/{pct[1]:.0f}" if pct else "-"
        defaults = set(r.get("defaults", ()))
        shown = [f"{r[k]:g}" + (" (default)" if k in defaults else "") for k in figures]
        table.add_row(r["id"], *shown, status, str(r["outcomes"]), heads, learned, pct_text, str(r["calls_in_flight"]))
        if r.get("base_url"):
            # The key's variable and whether it is set; never the key.
            key = (f", key in ${r['api_key_env']}" + ("" if r.get("api_key_set") else " (not set)")
                   if r.get("api_key_env") else "")
            model = f", model {r['upstream_model']}" if r.get("upstream_model") else ""
            endpoints.append(f"{r['id']}: {r['base_url']}{model}{key}")
    console = _console()
    console.print(table)
    if endpoints:
        console.print("endpoints:", markup=False)
        for line in endpoints:
            console.print(f"  {line}", markup=False)


def stats_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold",
                  title=f"{report['decisions']} decisions, {report['feedback']} feedback events")
    for col in ("LLM", "decisions", "refined feedback", "binary feedback", "online updates"):
        table.add_column(col, justify="left" if col == "LLM" else "right")
    online = (report.get("online") or {}).get("updates_per_llm", {})
    for llm, row in sorted(report["per_llm"].items()):
        upd = online.get(llm, {})
        table.add_row(llm, str(row.get("decisions", 0)), str(row.get("refined_feedback", 0)),
                      str(row.get("binary_feedback", 0)), str(sum(upd.values())) if upd else "0")
    _console().print(table)


def sweep_markdown(report: dict[str, Any]) -> list[str]:
    """The sweep's curves as a markdown table (the benchmarks and docs quote it)."""
    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.1f}"

    first = report["curves"][0]
    shares, targets = list(first["quality_share_at_cost_share"]), list(first["cost_share_to_reach_quality_share"])
    lo, hi = first["aiq_cost_range"]
    head = (["policy", f"AIQ [{lo:g},{hi:g}]"] + [f"q@{100 * float(s):g}%" for s in shares]
            + [f"c→{100 * float(t):g}%" for t in targets] + ["points"])
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for cv in report["curves"]:
        cells = ([cv["name"], pct(cv["aiq"])] + [pct(cv["quality_share_at_cost_share"][s]) for s in shares]
                 + [pct(cv["cost_share_to_reach_quality_share"][t]) for t in targets] + [str(len(cv["points"]))])
        out.append("| " + " | ".join(cells) + " |")
    return out


def sweep_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    lines = sweep_markdown(report)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    table = Table(show_edge=False, header_style="bold",
                  title=f"% of always-{report['best_llm']}'s quality and cost; hull of each policy's points")
    for k, col in enumerate(header):
        table.add_column(col, justify="left" if k == 0 else "right")
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        table.add_row(*cells, style="bold" if cells[0].startswith("mixllm") else None)
    console = _console()
    console.print(table)
    presets = ", ".join(f"{name} {100 * p['quality_share']:.2f}% at {100 * p['cost_share']:.2f}%"
                        for name, p in report["presets"].items())
    console.print(f"presets (quality at cost): {presets}")
