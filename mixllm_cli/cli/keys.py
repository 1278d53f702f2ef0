"""`mixllm keys`: the API keys `mixllm serve` asks for (create, list, revoke)."""

from __future__ import annotations

import datetime
from typing import Annotated

import typer

from .app import HomeOpt, JsonOpt, app

keys_app = typer.Typer(name="keys", help="API keys for `mixllm serve`: create, list, revoke.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(keys_app)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="State store URL, the one `mixllm serve --store` uses (default: $MIXLLM_STORE, "
                                 "else <home>/state.sqlite3)."),
]


@keys_app.command("create")
def create_cmd(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it), unique among unrevoked keys.")],
    rpm: Annotated[
        int | None, typer.Option("--rpm", help="At most this many requests per minute (every replica together).")
    ] = None,
    max_usd: Annotated[
        float | None,
        typer.Option("--max-usd", help="Budget: chat completions are refused (402) once their cost at catalogue "
                                       "prices reaches this many US dollars."),
    ] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    home: HomeOpt = None,
) -> None:
    """Create an API key and print it on stdout, once: only its sha256 is stored.

    Every replica on the same store accepts it within a second, with no restart.

    Example: mixllm keys create billing-app --rpm 600 --max-usd 50
    """
    from .. import output
    from ..state import open_store
    from ..state.keys import create_key

    s = open_store(home, store)
    try:
        record, key = create_key(s, name, rpm=rpm, max_usd=max_usd)
    finally:
        s.close()
    if as_json:
        output.json_line({"key": key, **record.to_dict()})
    else:
        typer.echo(key)
    output.note(f"created key {record.name!r} ({record.id}, {_limits(record.rpm, record.max_usd)}). It is shown "
                "this once: store it now (mixllm keeps only its sha256). Send it as Authorization: Bearer <key>.")


@keys_app.command("list")
def list_cmd(as_json: JsonOpt = False, store: StoreOpt = None, home: HomeOpt = None) -> None:
    """List the keys: id, name, prefix, created, limits, spend, revoked. Never the keys themselves.

    Example: mixllm keys list --json
    """
    from .. import output
    from ..state import open_store
    from ..state.keys import list_keys

    s = open_store(home, store)
    try:
        records = list_keys(s)
    finally:
        s.close()
    if as_json:
        output.json_line([r.to_dict() for r in records])
        return
    if not records:
        output.note("no API keys yet; create one with: mixllm keys create NAME")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in ("id", "name", "prefix", "created", "rpm", "budget $", "spent $", "revoked"):
        table.add_column(col, justify="right" if col in ("rpm", "budget $", "spent $") else "left")
    for r in records:
        table.add_row(r.id, r.name, r.prefix + "...", _when(r.created_s), "-" if r.rpm is None else str(r.rpm),
                      "-" if r.max_usd is None else f"{r.max_usd:g}", f"{r.spent_usd:.4f}",
                      "-" if r.revoked_s is None else _when(r.revoked_s))
    Console(highlight=False, soft_wrap=False, width=160).print(table)


@keys_app.command("revoke")
def revoke_cmd(
    name_or_id: Annotated[str, typer.Argument(help="The key's id (key_...), or the name of an unrevoked key.")],
    store: StoreOpt = None,
    home: HomeOpt = None,
) -> None:
    """Revoke a key: every replica refuses it (401) within 5 seconds.

    Example: mixllm keys revoke billing-app
    """
    from .. import output
    from ..state import open_store
    from ..state.keys import revoke_key

    s = open_store(home, store)
    try:
        record, revoked = revoke_key(s, name_or_id)
    finally:
        s.close()
    output.json_line(record.to_dict())
    if revoked:
        output.note(f"revoked key {record.name!r} ({record.id}); replicas refuse it within 5 s")
    else:
        output.note(f"key {record.name!r} ({record.id}) was already revoked, at {_when(record.revoked_s or 0)}")


def _limits(rpm: int | None, max_usd: float | None) -> str:
    return (f"{'no rate limit' if rpm is None else f'{rpm} requests/min'}, "
            f"{'no budget' if max_usd is None else f'budget ${max_usd:g}'}")


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).isoformat(" ", "seconds")
