"""``taskyard sizes``: the worker sizes the server offers, and which fit on its host."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from taskyard.cli.output import note, print_json, print_table

if TYPE_CHECKING:
    from taskyard.models import SizeInfo

COLUMNS = ("NAME", "CPU", "MEMORY", "GPU", "DEFAULT", "FITS")


def sizes(as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False) -> None:
    """List the worker sizes the server offers, and which fit on its host."""
    from taskyard.client import default_client

    catalog = default_client().sizes()
    if as_json:
        print_json(catalog.model_dump(mode="json"))
        return
    print_table(COLUMNS, [_row(size) for size in catalog.sizes])
    if catalog.capacity is not None:
        note(f"the server's host has {catalog.capacity.text}; a size that does not fit is refused")


def _row(size: SizeInfo) -> tuple:
    return size.name, f"{size.cpu:g}", size.memory_text, size.gpu, "yes" if size.default else "", _fits(size)


def _fits(size: SizeInfo) -> str:
    return "yes" if size.fits else f"no: {size.why}"
