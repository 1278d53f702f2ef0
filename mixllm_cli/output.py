"""Rendering for people (rich tables on stdout, notes on stderr) and for machines (JSON).

Tables fit the terminal without cutting what people type: a column of ids (LLMs, policies) keeps
every id whole, other columns wrap their headers, shrink, and drop (least useful first) when the
terminal is narrow, with a note naming what was left out. Piped output (not a terminal) is never
wrapped or cut: each column is as wide as its widest cell. Cells are plain text, never rich
markup (they quote the user's ids). rich is imported inside the functions so `mixllm --help`
does not pay for it.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from .asking import Answer
    from .routing.results import Decision

# The width of "not a terminal": wide enough that no table or line is ever wrapped.
UNLIMITED = 1_000_000


def json_line(obj: Any, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


def note(message: str) -> None:
    """A message for the person at the terminal: stderr, never mixed into data."""
    sys.stderr.write(message + "\n")


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream: not a terminal
        return False


def console_on(stream: TextIO | None = None) -> Console:
    """A rich console on `stream`: the terminal's width (or $COLUMNS) on a terminal, unlimited when piped."""
    from rich.console import Console

    stream = stream or sys.stdout
    width = None if _is_terminal(stream) else UNLIMITED
    return Console(file=stream, highlight=False, soft_wrap=False, width=width)


@dataclass(frozen=True)
class Column:
    """A table column. No column ever breaks a word (an id is one word); `drop` > 0: left out when
    the terminal is too narrow, highest first (0: always shown); `key`: names the row (ids), the
    row's first line when no table fits; `nowrap`: each cell stays on one line; `min_width`: a
    floor for its width (words that must stay together, like "→ id")."""

    header: str
    justify: str = "right"
    drop: int = 0
    key: bool = False
    nowrap: bool = False
    min_width: int = 1


def _widths(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int | None) -> list[int | None] | None:
    """The content width of each column, None where a column is left out, for a table at most
    `width` wide (None: unlimited); None when no table fits. Each column's minimum is its longest
    word (its longest cell when `nowrap`, and the header's longest word, and `min_width`): columns
    drop (highest `drop` first) until the minimums fit, those that fit again in the room left come
    back, then the columns with the most room to spare shrink first."""
    from rich.cells import cell_len

    def longest_word(text: str) -> int:
        return max((cell_len(w) for w in text.split(" ")), default=0)

    natural, least = [], []
    for k, col in enumerate(columns):
        cells = [str(r[k]) for r in rows]
        natural.append(max([col.min_width, cell_len(col.header), *(cell_len(c) for c in cells)]))
        least.append(max([col.min_width, longest_word(col.header),
                          *((cell_len(c) if col.nowrap else longest_word(c)) for c in cells)]))
    if width is None:
        return list(natural)
    shown = [True] * len(columns)

    def total(ws: Sequence[int]) -> int:  # each column's padding and rule: " │ " between columns, none at the edges
        kept = [w for w, s in zip(ws, shown) if s]
        return sum(kept) + 3 * (len(kept) - 1)

    dropped: list[int] = []
    while total(least) > width:
        droppable = [k for k, c in enumerate(columns) if c.drop and shown[k]]
        if not droppable:
            return None
        dropped.append(max(droppable, key=lambda k: (columns[k].drop, k)))
        shown[dropped[-1]] = False
    for k in reversed(dropped[:-1]):  # a column dropped early may fit in the room the later drops made
        shown[k] = True
        if total(least) > width:
            shown[k] = False
    out = list(natural)
    while total(out) > width:
        spare = [(out[k] - least[k], out[k], k) for k in range(len(out)) if shown[k] and out[k] > least[k]]
        out[max(spare)[2]] -= 1
    return [w if s else None for w, s in zip(out, shown)]


def print_table(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]], *,
                 styles: Sequence[str | None] | None = None) -> None:
    """`rows` (plain strings) as a table that fits `console` (see `_widths`), naming the columns
    left out; on a terminal too narrow for any table, as records: the ids on a line, the other
    columns below them as `header: value` (wrapped between values, never inside an id)."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    widths = _widths(columns, rows, console.width if console.width < UNLIMITED else None)
    if widths is None:
        for n, row in enumerate(rows):
            style = (styles[n] if styles else None) or ""
            # soft_wrap: the terminal wraps a long id, rich inserts no line break into it.
            console.print(Text(" ".join(str(row[k]) for k, c in enumerate(columns) if c.key), style=style),
                          soft_wrap=True)
            line = ""
            for pair in (f"{c.header}: {row[k]}" for k, c in enumerate(columns) if not c.key):
                if line and cell_len(f"{line}, {pair}") > console.width:
                    console.print(Text(line + ","), soft_wrap=True)
                    line = ""
                line = f"{line}, {pair}" if line else f"    {pair}"
            console.print(Text(line), soft_wrap=True)
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    shown = [k for k, w in enumerate(widths) if w is not None]
    for k in shown:
        col = columns[k]
        table.add_column(col.header, justify=col.justify, width=widths[k], overflow="fold")  # type: ignore[arg-type]
    for n, row in enumerate(rows):
        table.add_row(*(Text(str(row[k])) for k in shown), style=styles[n] if styles else None)
    console.print(table)
    dropped = [columns[k].header for k, w in enumerate(widths) if w is None]
    if dropped:
        console.print(f"(left out at {console.width} columns: {', '.join(dropped)}; a wider terminal, "
                      "a pipe or --json shows them)", markup=False, style="dim")


def feedback_command(decision_id: str, options: Sequence[str] = (),
                     verdict: Sequence[str] = ("--quality", "0.8")) -> str:
    """The command that sends feedback on a decision, ready to paste (`options`: --home X ...)."""
    return shlex.join(["mixllm", "feedback", decision_id, *options, *verdict])


def route_table(decision: Decision, options: Sequence[str] = ()) -> None:
    """The candidates, the choice and the decision id on stdout; the feedback command on stderr.

    `options` are the command-line options the feedback command must repeat (--home X).
    """
    from rich.cells import cell_len
    from rich.text import Text

    # The choice's arrow stays beside its id; a "(cold)" mark may wrap below it.
    arrow = max((cell_len(f"→ {c.llm}") for c in decision.candidates), default=1)
    columns = [Column("LLM", "left", key=True, min_width=arrow), Column("pred. quality"), Column("pred. cost (¢)"),
               Column("exp. wait (ms)", drop=2), Column("wait penalty", drop=3), Column("score")]
    rows, styles = [], []
    for c in sorted(decision.candidates, key=lambda c: (not c.available, -c.score)):
        mark = "→ " if c.llm == decision.choice else "  "
        styles.append("bold green" if c.llm == decision.choice else ("dim" if not c.available else None))
        rows.append([f"{mark}{c.llm}" + (" (cold)" if c.cold else ""), f"{c.quality:.3f}", f"{100 * c.cost_usd:.4f}",
                     f"{c.wait_ms:.0f}", f"{c.penalty:.4f}", f"{c.score:+.4f}" if c.available else "not offered"])
    console = console_on()
    print_table(console, columns, rows, styles=styles)
    console.print(Text.assemble("choice: ", (decision.choice, "bold")), soft_wrap=True)
    if decision.decision_id is not None:
        console.print(Text(f"decision: {decision.decision_id}"), soft_wrap=True)
        note(f"feedback: {feedback_command(decision.decision_id, options)}  # or --good / --bad")
    else:
        note("not recorded (--no-queue): no decision id to send feedback to")


def answer_notes(answer: Answer, options: Sequence[str] = ()) -> None:
    """On stderr, after a streamed answer: who answered, how fast, at what cost, the decision, and the
    feedback command to paste (`options`: --home X ...)."""
    tokens = answer.response_tokens
    cost = answer.cost_usd
    first = "" if answer.ttft_ms is None else f" (first token {answer.ttft_ms / 1000:.1f} s)"
    after = f" after {', '.join(f['llm'] for f in answer.fallback_from)} failed" if answer.fallback_from else ""
    note(f"answered by {answer.llm}{after} in {answer.latency_ms / 1000:.1f} s{first}, "
         f"{'tokens not reported' if tokens is None else f'{tokens:,} tokens'}, "
         f"{'cost unknown' if cost is None else f'${cost:.6f}'}; decision {answer.decision.decision_id}")
    if answer.decision.decision_id is not None:
        note(f"feedback: {feedback_command(answer.decision.decision_id, options, ('--good',))}"
             "  # or --bad / --quality 0.8")


def evaluation_table(report: dict[str, Any]) -> None:
    columns = [Column("policy", "left", key=True), Column("mean quality", drop=4), Column("total cost ($)", drop=5),
               Column("% of ref. quality"), Column("% of ref. cost")]
    stream = "tolerance_s" in report
    if stream:
        columns += [Column("answers too late", drop=2), Column("p95 wait (s)", drop=3)]
    rows = []
    for r in report["results"]:
        extra = [str(r["late"]), f"{r['wait_p95_s']:.1f}"] if stream else []
        rows.append([r["policy"], f"{r['mean_quality']:.4f}", f"{r['total_cost_usd']:.4f}",
                     f"{r['quality_pct_of_best']:.2f}", f"{r['cost_pct_of_best']:.2f}", *extra])
    console = console_on()
    print_table(console, columns, rows)
    console.print(f"ref. = always-{report['best_llm']} (the best single LLM on this split)", markup=False,
                  soft_wrap=True)


def training_summary(report: dict[str, Any]) -> None:
    columns = [Column("budget", "left"), Column("λ"), Column("target cost share"),
               Column("share on train (out-of-fold)")]
    rows = [[name, f"{p['lambda']:.4g}", f"{p['target_cost_share']:.0%}", f"{p['train_cost_share']:.1%}"]
            for name, p in report["presets"].items()]
    console = console_on(sys.stderr)
    console.print(f"artifact set: {report['artifacts']}", markup=False, soft_wrap=True)
    print_table(console, columns, rows)
    console.print(f"{report['rows']} queries, {len(report['llms'])} LLMs, {report['seconds']} s", markup=False)
    if report.get("tags"):
        console.print(f"tag-enhanced embedding: {report['tags']['k']} domains, "
                      f"{report['tags']['seconds']['total']} s for the tag pipeline", markup=False)
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
    figures = ("input_usd_per_mtok", "output_usd_per_mtok", "ttft_ms", "output_tokens_per_s", "slots")
    # A figure and its "(default)" mark stay on one line (nowrap).
    columns = [Column("LLM", "left", key=True), Column("$ in / 1M tok"), Column("$ out / 1M tok"),
               Column("TTFT ms", nowrap=True, drop=4), Column("tok/s", nowrap=True, drop=5),
               Column("slots", nowrap=True, drop=8), Column("status", "left"), Column("outcomes", drop=7),
               Column("heads", "left", nowrap=True, drop=6), Column("learned TTFT / tok/s (n)", drop=9),
               Column("p50/p95 ms", drop=9), Column("in flight", drop=9)]
    table_rows, endpoints = [], []
    for r in rows:
        status = r["status"] if r["status"] != "cold" else f"cold (explores {r['explore_share']:.0%})"
        heads = f"{r['quality_head']} / {r['length_head']}" if r["quality_head"] else "-"
        learned = (f"{r['learned_ttft_ms']:g} / {r['learned_output_tokens_per_s']:g} ({r['latency_observations']})"
                   if r["latency_observations"] else "-")
        pct = r["latency_p50_p95_ms"]
        pct_text = f"{pct[0]:.0f}/{pct[1]:.0f}" if pct else "-"
        defaults = set(r.get("defaults", ()))
        shown = [f"{r[k]:g}" + (" (default)" if k in defaults else "") for k in figures]
        table_rows.append([r["id"], *shown, status, str(r["outcomes"]), heads, learned, pct_text,
                           str(r["calls_in_flight"])])
        if r.get("base_url"):
            # The key's variable and whether it is set; never the key.
            key = (f", key in ${r['api_key_env']}" + ("" if r.get("api_key_set") else " (not set)")
                   if r.get("api_key_env") else "")
            model = f", model {r['upstream_model']}" if r.get("upstream_model") else ""
            endpoints.append(f"{r['id']}: {r['base_url']}{model}{key}")
    console = console_on()
    print_table(console, columns, table_rows)
    if endpoints:
        console.print("endpoints:", markup=False)
        for line in endpoints:
            console.print(f"  {line}", markup=False, soft_wrap=True)


def stats_table(report: dict[str, Any]) -> None:
    columns = [Column("LLM", "left", key=True), Column("decisions"), Column("refined feedback", drop=2),
               Column("binary feedback", drop=3), Column("online updates", drop=4)]
    online = (report.get("online") or {}).get("updates_per_llm", {})
    rows = []
    for llm, row in sorted(report["per_llm"].items()):
        upd = online.get(llm, {})
        rows.append([llm, str(row.get("decisions", 0)), str(row.get("refined_feedback", 0)),
                     str(row.get("binary_feedback", 0)), str(sum(upd.values())) if upd else "0"])
    console = console_on()
    console.print(f"{report['decisions']} decisions, {report['feedback']} feedback events", markup=False)
    print_table(console, columns, rows)


def sweep_markdown(report: dict[str, Any]) -> list[str]:
    """The sweep's curves as a markdown table (the benchmarks and docs quote it); "—" where a
    policy has no point in range (AIQ), no point that cheap (q@) or never reaches the quality (c→)."""
    head, rows = _sweep_rows(report)
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in rows]
    return out


def _sweep_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.1f}"

    first = report["curves"][0]
    shares, targets = list(first["quality_share_at_cost_share"]), list(first["cost_share_to_reach_quality_share"])
    lo, hi = first["aiq_cost_range"]
    head = (["policy", f"AIQ [{lo:g},{hi:g}]"] + [f"q@{100 * float(s):g}%" for s in shares]
            + [f"c→{100 * float(t):g}%" for t in targets] + ["points"])
    rows = [[cv["name"], pct(cv["aiq"])] + [pct(cv["quality_share_at_cost_share"][s]) for s in shares]
            + [pct(cv["cost_share_to_reach_quality_share"][t]) for t in targets] + [str(len(cv["points"]))]
            for cv in report["curves"]]
    return head, rows


# Which sweep columns leave first at a narrow terminal (AIQ and the policy never do).
_SWEEP_DROP = {"q@10%": 4, "q@15%": 6, "q@20%": 2, "q@25%": 5, "q@50%": 3, "c→90%": 5, "c→95%": 2, "c→100%": 4,
               "points": 8}


def sweep_table(report: dict[str, Any]) -> None:
    head, rows = _sweep_rows(report)
    columns = [Column(h, "left" if k == 0 else "right", key=k == 0, drop=0 if k < 2 else _SWEEP_DROP.get(h, 1))
               for k, h in enumerate(head)]
    styles = ["bold" if r[0].startswith("mixllm") else None for r in rows]
    console = console_on()
    title = f"% of always-{report['best_llm']}'s quality and cost; hull of each policy's points"
    console.print(title, markup=False, soft_wrap=True)
    print_table(console, columns, rows, styles=styles)
    presets = ", ".join(f"{name} {100 * p['quality_share']:.2f}% at {100 * p['cost_share']:.2f}%"
                        for name, p in report["presets"].items())
    console.print(f"presets (quality at cost): {presets}", markup=False, soft_wrap=True)
    console.print("—: no point in the AIQ range (AIQ), none that cheap (q@), the quality never reached (c→)",
                  markup=False, soft_wrap=True)
