"""Rendered records and reports (impact assessments, review packs, audit reports): one Jinja2
environment over `aims_core/templates/`, shared by every report.

HTML templates (`*.html.j2`) are autoescaped: answers and comments are typed by people and must
never become markup. In Markdown templates, text people typed goes through `md_quote` (a block)
or `md_inline` (one line, table-safe), which also neutralise `<` so no raw HTML passes through
a Markdown renderer. Undefined variables fail loudly rather than render as blanks.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aims_core.models import as_utc

if TYPE_CHECKING:
    from jinja2 import Environment

_ESCAPED_SUFFIXES = (".html", ".htm", ".xml")


def _autoescape(template_name: str | None) -> bool:
    return template_name is not None and template_name.removesuffix(".j2").endswith(
        _ESCAPED_SUFFIXES
    )


def _when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return "-" if value is None else as_utc(value).strftime(fmt)


def _no_html(text: object) -> str:
    return str(text).replace("<", "&lt;")


def _md_quote(text: object) -> str:
    """Text as a Markdown block quote, every line quoted (so it cannot end the block)."""
    lines = _no_html(text).splitlines() or [""]
    return "\n".join(f"> {line}".rstrip() for line in lines)


def _md_inline(text: object) -> str:
    """Text on one line, safe inside a Markdown table cell."""
    return " ".join(_no_html(text).split()).replace("|", "\\|")


@functools.cache
def environment() -> Environment:
    """The one environment, built on first use: importing jinja2 is left to the commands that
    render (`aims --help` and `aims status` must not pay for it)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("aims_core", "templates"),
        autoescape=_autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(when=_when, md_quote=_md_quote, md_inline=_md_inline)
    return env


def render(template_name: str, **context: Any) -> str:
    """Render `aims_core/templates/<template_name>` with `context`."""
    return environment().get_template(template_name).render(**context)
