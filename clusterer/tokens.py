"""Words for keywords, in any script.

Texts come from anywhere (Reddit and the like): English and other languages,
emoji, code, a keyboard mash of 200,000 characters. The analyser turns a text
into the tokens keywords are chosen from:

- at most ``MAX_DOC_CHARS`` characters of a text are read (``clusterer.keywords``
  cuts each text before a class's texts are joined: keywords are about what
  recurs across a cluster, and one huge text must not cost more than the rest
  of the cluster together);
- words are runs of letters with their combining marks (``\\p{L}\\p{M}``:
  Latin, Cyrillic, Greek, Arabic, Devanagari, Hangul...), lower-cased, two
  characters or more; digits, underscores and punctuation split words and
  are never tokens themselves;
- scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao,
  Khmer, Myanmar) are split into runs of one script: a run of at most
  ``WHOLE_RUN_CHARS`` characters is one token, a longer one gives its
  bigrams of characters (graphemes, so a Thai vowel sign stays on its
  consonant; the usual answer where no dictionary segmenter is at
  hand); runs of Hiragana alone are left out (Japanese grammar: particles
  and endings);
- each emoji is a token (a cluster of "😂" replies is about "😂");
- English stop words and the fragments of contractions are left out;
- no token is longer than ``MAX_TOKEN_CHARS`` characters: a longer "word"
  (a URL's path, a hash, a mash) is not a word and is dropped.
"""

from __future__ import annotations

import regex
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

MAX_TOKEN_CHARS = 40
"""Longest keyword token; longer runs of letters are not words."""

MAX_DOC_CHARS = 5_000
"""Characters of one text read for keywords."""

WHOLE_RUN_CHARS = 4
"""Runs of a script written without spaces up to this length are one token
(most Japanese and Chinese compounds are two to four characters)."""

_NO_SPACE = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}ー々"
_TOKEN = regex.compile(
    rf"(?P<word>(?:(?![{_NO_SPACE}])\p{{L}})(?:(?![{_NO_SPACE}])[\p{{L}}\p{{M}}])*)"
    rf"|(?P<dense>[{_NO_SPACE}][{_NO_SPACE}\p{{M}}]*)"
    r"|(?P<emoji>\p{Extended_Pictographic})"
)
_SCRIPT_RUN = regex.compile(
    r"[\p{Han}々]+|[\p{Katakana}ー]+|\p{Hiragana}+|[\p{Thai}\p{M}]+|[\p{Lao}\p{M}]+"
    r"|[\p{Khmer}\p{M}]+|[\p{Myanmar}\p{M}]+"
)
_HIRAGANA = regex.compile(r"\p{Hiragana}+")
_GRAPHEME = regex.compile(r"\X")

EXTRA_STOP_WORDS = frozenset(
    """
    don doesn didn isn wasn aren weren won wouldn couldn shouldn haven hasn hadn ain
    ll ve re im ive id youre thats dont cant doesnt didnt isnt wont
    yes yeah yep ok okay oh ah um uh just like really got gonna
    http https www com
    """.split()
)
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | EXTRA_STOP_WORDS


def _dense_tokens(run: str) -> list[str]:
    """Tokens of a run of scripts written without spaces."""
    out: list[str] = []
    for part in _SCRIPT_RUN.findall(run):
        if _HIRAGANA.fullmatch(part):
            continue
        chars = _GRAPHEME.findall(part)
        if len(chars) <= WHOLE_RUN_CHARS:
            out.append(part)
        else:
            out.extend(chars[i] + chars[i + 1] for i in range(len(chars) - 1))
    return out


def tokens(text: str) -> list[str]:
    """The keyword tokens of a text (see the module docstring; the caller bounds its length)."""
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        word, dense, emoji = m.group("word", "dense", "emoji")
        if word:
            w = word.lower()
            if 2 <= len(w) <= MAX_TOKEN_CHARS and w not in STOP_WORDS:
                out.append(w)
        elif dense:
            out.extend(_dense_tokens(dense))
        elif emoji:
            out.append(emoji)
    return out
