"""Labels ``map.png`` can draw with the fonts this machine has.

matplotlib's bundled DejaVu Sans has no CJK ideographs and no emoji; a label
using them comes out as empty boxes and a ``UserWarning: Glyph ... missing``
on every save. So the map draws with DejaVu Sans followed by the first CJK
font installed (Noto Sans CJK, WenQuanYi, Droid Sans Fallback, IPA, ...),
which matplotlib falls back to glyph by glyph, and every character that none
of them covers is replaced before drawing: an emoji by its Unicode name
(``:face with tears of joy:``, so a cluster of "😂" replies still says what it
is), joiners, variation selectors and combining marks dropped, anything else
by ``□``. A label is never left blank: the caller keeps the cluster id.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

BASE_FAMILY = "DejaVu Sans"
"""Ships inside matplotlib, so it is always there."""

FALLBACK_FAMILIES = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "IPAexGothic",
    "IPAGothic",
    "TakaoGothic",
    "Unifont",
)
"""Fonts with CJK coverage, in order of preference; the first one installed is used."""

PLACEHOLDER = "□"
"""Stands for a character no font here can draw (in DejaVu Sans)."""

_DROPPED = frozenset({"Mn", "Me", "Cf", "Cc", "Sk"})
"""Categories dropped when no font has them: combining marks, joiners and variation
selectors, controls, emoji skin-tone modifiers (their base is replaced anyway)."""


@dataclass(frozen=True)
class MapFonts:
    """The font families the map draws with and every code point they cover."""

    families: tuple[str, ...]
    codepoints: frozenset[int]

    def drawable(self, text: str) -> str:
        """``text`` with each character the fonts lack replaced (see the module docstring)."""
        out: list[str] = []
        for ch in text:
            if ord(ch) in self.codepoints:
                out.append(ch)
            elif ch.isspace():
                out.append(" ")
            elif unicodedata.category(ch) in _DROPPED:
                continue
            elif unicodedata.category(ch) == "So" and (name := _name(ch)):
                out.append(f":{name.lower()}:")
            else:
                out.append(PLACEHOLDER)
        return "".join(out)


def _name(ch: str) -> str:
    try:
        return unicodedata.name(ch)
    except ValueError:
        return ""


def visible(text: str) -> bool:
    """Whether ``text`` shows anything: a letter, digit, punctuation or symbol, not only
    spaces, joiners and marks (which fonts have but draw as nothing)."""
    return any(unicodedata.category(ch)[0] in "LNPS" for ch in text)


def _font_path(family: str) -> str | None:
    from matplotlib import font_manager

    try:
        return str(font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False))
    except ValueError:
        return None


@functools.cache
def map_fonts() -> MapFonts:
    """DejaVu Sans and the first installed CJK fallback, with their coverage (looked up once)."""
    from matplotlib import ft2font

    families: list[str] = []
    codepoints: set[int] = set()
    for family in (BASE_FAMILY, *FALLBACK_FAMILIES):
        path = _font_path(family)
        if path is None:
            continue
        families.append(family)
        codepoints.update(ft2font.FT2Font(path).get_charmap())
        if family != BASE_FAMILY:
            break
    return MapFonts(tuple(families), frozenset(codepoints))
