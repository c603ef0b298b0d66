"""The one place that turns model names and tensor names into C identifiers."""

import re

_NON_IDENT = re.compile(r"[^0-9A-Za-z_]")


def c_identifier(name: str) -> str:
    """Return ``name`` as a C identifier: every non-alphanumeric becomes ``_``.

    This is the legacy microTVM rule (``tvmgen_<mod>`` and the struct members of its header),
    so headers generated here match what old application code expects. A leading digit gets a
    ``_`` prefix, which the legacy rule left as an invalid identifier.
    """
    if not name:
        raise ValueError("cannot make a C identifier from an empty name")
    ident = _NON_IDENT.sub("_", name)
    if ident[0].isdigit():
        ident = "_" + ident
    return ident
