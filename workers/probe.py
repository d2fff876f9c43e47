"""Fixed probe texts for the precision check: short and long, several
scripts, emoji, code, empty and whitespace-only, and one far past 256 tokens."""

from __future__ import annotations

_LONG = " ".join(
    f"Sentence {i} of a long post about compilers, orbital launches, sourdough and penalty kicks." for i in range(60)
)

PROBE_TEXTS: list[str] = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "How do I bake sourdough bread with a stiff starter?",
    "Rust's borrow checker rejected my async closure again 😂",
    "TIL the James Webb telescope orbits the L2 point, not the Earth.",
    "Le café est fermé le dimanche, malheureusement.",
    "東京の天気は明日雨になるそうです。",
    "Москва — столица России.",
    "def f(x):\n    return x ** 2  # square",
    "SELECT id, text FROM chains WHERE depth > 2 ORDER BY id;",
    "lol",
    "+1",
    "",
    "   \n\t ",
    "Stocks fell 3% after the central bank raised interest rates by 50 basis points.",
    "My tomato seedlings are leggy; should I repot them deeper or add more light?",
    "Penalty! The referee pointed to the spot after VAR review in the 89th minute.",
    "🚀🚀🚀 to the moon",
    "naïve façade coöperate résumé",
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
    _LONG,
    _LONG[: len(_LONG) // 3],
]
