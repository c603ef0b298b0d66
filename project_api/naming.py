"""The one place that turns model names and tensor names into C identifiers."""

import re

_NON_IDENT = re.compile(r"[^0-9A-Za-z_]")

# C99 keywords: a tensor named like one would make an invalid struct member in the header.
_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline "
    "int long register restrict return short signed sizeof static struct switch typedef union unsigned "
    "void volatile while _Bool _Complex _Imaginary".split()
)


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


def c_member_name(tensor_name: str) -> str:
    """The member of ``struct tvmgen_<mod>_inputs/outputs`` for a tensor: ``c_identifier``, plus a
    ``_`` suffix for a C keyword (a tensor named ``double`` would otherwise break the header).
    Model names need no suffix: they are always used behind the ``tvmgen_`` prefix."""
    ident = c_identifier(tensor_name)
    return ident + "_" if ident in _C_KEYWORDS else ident
