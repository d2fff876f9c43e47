"""Reddit-like thread trees and their root-to-leaf chains.

A thread is a root post with a tree of replies. Real chain exports write one
chain per leaf: the path from the root down to that leaf, one row per message,
so every message recurs in every chain below it. Common short replies
("lol", "[deleted]", "This.") come from one shared list, so they also recur
across threads and subreddits. Root posts and topical replies use the
subreddit's topic words, with the same mix as the flat generator: a few long
posts (well past 256 tokens), unicode and emoji, a few null and empty texts.

A tree is kept as flat tuples (text and parent index per message): cheap to
build, and a chain is a walk up the parent indices.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from corpus.generate import topic_sentence

COMMON_REPLIES: tuple[str, ...] = (
    "[deleted]",
    "[removed]",
    "lol",
    "lmao",
    "thanks",
    "Thanks!",
    "This.",
    "Same here",
    "+1",
    "Source?",
    "ok",
    "Wow",
    "Exactly.",
    "Agreed 👍",
    "No way 😂",
    "Came here to say this",
    "Username checks out",
    "Underrated comment",
)
"""Short replies shared by every subreddit; they recur across threads as on Reddit."""

EMPTY_TEXTS: tuple[str, ...] = ("", " ", "\n\t ")
"""Blank texts a real export holds (link posts without a body, whitespace edits)."""


@dataclass(frozen=True)
class ThreadShape:
    """How big threads grow and which texts they hold.

    A root goes unanswered (a one-row chain) with probability ``unanswered_share``;
    otherwise its direct replies follow a Pareto law (``root_scale``,
    ``root_alpha``, at most ``max_root_replies``): most threads are small and a
    few are huge, as on Reddit. A reply at depth ``d`` goes unanswered
    with probability ``leaf_base + leaf_step * d`` and otherwise gets 1 to
    ``max_branching`` replies, so threads are bushy near the root and thin out
    below, as real ones do; nothing goes deeper than ``max_depth``.
    """

    unanswered_share: float = 0.05
    root_scale: float = 1.5
    root_alpha: float = 1.3
    max_root_replies: int = 60
    max_branching: int = 3
    leaf_base: float = 0.3
    leaf_step: float = 0.07
    max_depth: int = 7
    max_messages: int = 300
    common_share: float = 0.3
    long_share: float = 0.03
    null_share: float = 0.01
    empty_share: float = 0.01


@dataclass(frozen=True)
class Thread:
    """One thread: message texts and each message's parent (-1 for the root, index 0)."""

    texts: tuple[str | None, ...]
    parents: tuple[int, ...]

    def chains(self) -> list[list[int]]:
        """Every root-to-leaf path as message indices, root first, in message order of the leaves."""
        has_child = [False] * len(self.parents)
        for parent in self.parents[1:]:
            has_child[parent] = True
        paths: list[list[int]] = []
        for leaf, inner in enumerate(has_child):
            if inner:
                continue
            path = [leaf]
            while self.parents[path[-1]] >= 0:
                path.append(self.parents[path[-1]])
            paths.append(path[::-1])
        return paths


def _topical(rng: random.Random, words: list[str], shape: ThreadShape, sentences: tuple[int, int]) -> str | None:
    r = rng.random()
    if r < shape.null_share:
        return None
    if r < shape.null_share + shape.empty_share:
        return rng.choice(EMPTY_TEXTS)
    if r < shape.null_share + shape.empty_share + shape.long_share:
        # Far beyond 256 tokens, so truncation is exercised.
        return " ".join(topic_sentence(rng, words) for _ in range(rng.randint(40, 70)))
    return " ".join(topic_sentence(rng, words) for _ in range(rng.randint(*sentences)))


def _reply(rng: random.Random, words: list[str], shape: ThreadShape) -> str | None:
    if rng.random() < shape.common_share:
        return rng.choice(COMMON_REPLIES)
    return _topical(rng, words, shape, (1, 3))


def _reply_count(rng: random.Random, depth: int, shape: ThreadShape) -> int:
    if depth == 0:
        if rng.random() < shape.unanswered_share:
            return 0
        return min(shape.max_root_replies, int(shape.root_scale * rng.paretovariate(shape.root_alpha)))
    if depth >= shape.max_depth or rng.random() < shape.leaf_base + shape.leaf_step * depth:
        return 0
    return rng.randint(1, shape.max_branching)


def grow_thread(rng: random.Random, words: list[str], shape: ThreadShape) -> Thread:
    """Grow one thread on the topic ``words``; deterministic for the state of ``rng``."""
    texts: list[str | None] = [_topical(rng, words, shape, (1, 4))]
    parents = [-1]
    depths = [0]
    pending = [0]
    while pending:
        node = pending.pop()
        room = shape.max_messages - len(texts)
        for _ in range(min(room, _reply_count(rng, depths[node], shape))):
            texts.append(_reply(rng, words, shape))
            parents.append(node)
            depths.append(depths[node] + 1)
            pending.append(len(texts) - 1)
    return Thread(tuple(texts), tuple(parents))
