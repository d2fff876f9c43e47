"""Synthetic Reddit-like conversation chains for demos, tests and benchmarks.

Each file holds chains of messages: a root post and replies, where every
chain repeats its ancestors' texts (as real chain exports do), so texts recur
across rows and files. The mix mirrors real data: short replies, long posts
(well over 256 tokens), unicode and emoji, and a few null and empty texts.
Topics follow the subreddit, so clustering has something real to find.
Output is deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bus.constants import INPUT_DIR

TOPICS: dict[str, list[str]] = {
    "cooking": "recipe oven garlic sourdough butter simmer knife skillet onion basil roast broth dough flour".split(),
    "space": "rocket orbit telescope galaxy nebula astronaut launch mars lunar satellite comet gravity".split(),
    "programming": "compiler rust python function bug debugger thread memory pointer async database api".split(),
    "football": "goal striker midfield penalty referee league transfer keeper match offside coach derby".split(),
    "music": "guitar chord album melody drummer concert vinyl bass synth chorus tempo lyrics".split(),
    "gardening": "tomato compost seedling soil prune mulch greenhouse roses weeds harvest watering bulbs".split(),
    "finance": "stocks index bond dividend inflation budget savings mortgage portfolio etf tax interest".split(),
    "travel": "flight hostel passport itinerary train backpack museum beach visa airport luggage map".split(),
}

OPENERS = ["Honestly", "TIL", "Does anyone know why", "I think", "Hot take:", "Quick question:", "PSA:", "Update:"]
FILLERS = ["really", "kind of", "absolutely", "probably", "never", "always", "basically", "surprisingly"]
SHORT_REPLIES = ["This.", "lol", "Same here", "Thanks!", "Source?", "Agreed 👍", "No way 😂", "+1", "ok", "Wow"]
UNICODE_BITS = ["café", "naïve", "Grüße", "東京", "Москва", "😀", "🚀", "🍕", "⚽️", "🎸", "ñandú", "🌱", "€", "—"]


@dataclass(frozen=True)
class CorpusSpec:
    """Size and shape of a generated corpus."""

    suffixes: int = 1
    subreddits: int = 2
    files_per_subreddit: int = 2
    rows_per_file: int = 100
    seed: int = 0
    long_share: float = 0.05
    null_share: float = 0.01
    empty_share: float = 0.01
    row_group_size: int | None = None


def topic_sentence(rng: random.Random, words: list[str]) -> str:
    """One sentence built from a topic's words (sometimes with a unicode or emoji tail)."""
    picked = rng.sample(words, k=min(len(words), rng.randint(3, 6)))
    filler = rng.choice(FILLERS)
    text = f"{rng.choice(OPENERS)} the {picked[0]} is {filler} about {', '.join(picked[1:])}."
    if rng.random() < 0.3:
        text += " " + rng.choice(UNICODE_BITS)
    return text


def _message(rng: random.Random, words: list[str], spec: CorpusSpec) -> str | None:
    r = rng.random()
    if r < spec.null_share:
        return None
    if r < spec.null_share + spec.empty_share:
        return rng.choice(["", " ", "\n\t "])
    if r < spec.null_share + spec.empty_share + spec.long_share:
        # A long post: far beyond 256 tokens, so truncation is exercised.
        return " ".join(topic_sentence(rng, words) for _ in range(rng.randint(40, 70)))
    if rng.random() < 0.35:
        return rng.choice(SHORT_REPLIES)
    return " ".join(topic_sentence(rng, words) for _ in range(rng.randint(1, 3)))


def _chains(rng: random.Random, words: list[str], spec: CorpusSpec, n_rows: int, prefix: str) -> pa.Table:
    ids: list[str] = []
    texts: list[str | None] = []
    chain_ids: list[str] = []
    depths: list[int] = []
    chain = 0
    while len(texts) < n_rows:
        chain += 1
        messages = [_message(rng, words, spec) for _ in range(rng.randint(1, 5))]
        # One row per prefix of the chain: ancestors' texts repeat.
        for depth, text in enumerate(messages):
            if len(texts) >= n_rows:
                break
            ids.append(f"{prefix}_{chain}_{depth}")
            texts.append(text)
            chain_ids.append(f"{prefix}_{chain}")
            depths.append(depth)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "chain_id": pa.array(chain_ids, pa.string()),
            "depth": pa.array(depths, pa.int32()),
            "text": pa.array(texts, pa.string()),
        }
    )


def subreddit_names(n: int) -> list[str]:
    """The first ``n`` subreddit names: the topics in order, then numbered repeats (``cooking1``)."""
    topics = list(TOPICS)
    return [topics[i % len(topics)] + ("" if i < len(topics) else str(i // len(topics))) for i in range(n)]


def topic_of(subreddit: str) -> str:
    """The topic a subreddit name stands for (``cooking1`` -> ``cooking``)."""
    return subreddit.rstrip("0123456789")


def generate_corpus(
    root: Path,
    *,
    suffixes: int = 1,
    subreddits: int = 2,
    files_per_subreddit: int = 2,
    rows_per_file: int = 100,
    seed: int = 0,
    **extra: float | int | None,
) -> list[Path]:
    """Write ``root/chains/{suffix}/{subreddit}/part-NNNNN.parquet``; return the paths."""
    spec = CorpusSpec(suffixes, subreddits, files_per_subreddit, rows_per_file, seed, **extra)  # type: ignore[arg-type]
    written: list[Path] = []
    for s in range(spec.suffixes):
        suffix = f"2024-{s + 1:02d}"
        for sub in subreddit_names(spec.subreddits):
            words = TOPICS[topic_of(sub)]
            rng = random.Random(f"{spec.seed}/{suffix}/{sub}")
            folder = root / INPUT_DIR / suffix / sub
            folder.mkdir(parents=True, exist_ok=True)
            for f in range(spec.files_per_subreddit):
                table = _chains(rng, words, spec, spec.rows_per_file, f"{sub}_{s}_{f}")
                path = folder / f"part-{f:05d}.parquet"
                pq.write_table(table, path, row_group_size=spec.row_group_size or max(1, spec.rows_per_file))
                written.append(path)
    return written
