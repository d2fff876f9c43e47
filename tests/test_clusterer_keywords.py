"""Keywords that always say something: any script, stop words and punctuation
out, bounded tokens, and frequent texts where a cluster has no words."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from clusterer.cli import main
from clusterer.keywords import UNAVAILABLE, class_tfidf, describe, frequent_texts, shorten
from clusterer.synthetic import PlantedSpec, planted, write_run
from clusterer.tokens import MAX_TOKEN_CHARS, STOP_WORDS, tokens

FAST = ["--reducer", "pca", "--map-points", "0", "-q"]

REPLIES = ["This", "Same here", "So this", "Me too", "This is it", "Same"]
EMOJI = list("😂👍🔥❤🙏😭🎉💯🤔😎🚀🌈🍕🐱🐶⚽🎸📷🌊🍺")
JA_NOUNS = ["東京", "大阪", "電車", "新幹線", "駅", "切符", "旅行", "ホテル", "観光", "温泉", "京都", "地図"]
JA_ENDINGS = ["に行きました", "が好きです", "はとても便利でした", "を予約しました", "で会いましょう"]
WORDS = ["guitar", "album", "concert", "drummer", "chorus", "melody", "vinyl", "riff", "band", "tour"]
HUGE = "ab" * 100_000
"""One real text of 200,000 characters with no space: not a word."""


def provoking_texts(labels: np.ndarray) -> list[str]:
    """Cluster 0: short replies only; 1: English music talk and one 200k-character
    text; 2: emoji only; 3: Japanese with no spaces; others: music talk."""
    rng = np.random.default_rng(0)
    seen: dict[int, int] = {}
    out = []
    for lab in labels.tolist():
        i = seen[lab] = seen.get(lab, -1) + 1
        if lab == 0:
            out.append(f"{REPLIES[i % len(REPLIES)]}{'!' * (i // len(REPLIES))}.")
        elif lab == 2:
            out.append("".join(rng.choice(EMOJI, size=3)) + " " * (i % 3))
        elif lab == 3:
            a, b = rng.choice(len(JA_NOUNS), size=2, replace=False)
            out.append(f"{JA_NOUNS[a]}と{JA_NOUNS[b]}{JA_ENDINGS[i % len(JA_ENDINGS)]}。{i}")
        elif lab == 1 and i == 0:
            out.append(HUGE)
        else:
            out.append(" ".join(rng.choice(WORDS, size=4)) + f" and the {i}")
    return out


def is_punctuation(word: str) -> bool:
    return all(unicodedata.category(ch)[0] in "PZS" and ch not in EMOJI for ch in word)


def test_tokens_leave_out_stop_words_punctuation_and_long_runs() -> None:
    assert tokens("This.") == [] and tokens("Same here!!") == [] and tokens("...?!") == []
    assert tokens("I don't like cats, they're rude") == ["cats", "rude"]
    assert tokens(HUGE) == [] and tokens("x" * MAX_TOKEN_CHARS) == ["x" * MAX_TOKEN_CHARS]
    assert tokens("Привет, Москва") == ["привет", "москва"]
    assert tokens("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"], "combining marks stay in their word"


def test_tokens_of_scripts_without_spaces_and_emoji() -> None:
    assert tokens("東京タワーに行きました") == ["東京", "タワー", "行"], "script runs; hiragana left out"
    assert tokens("自然言語処理") == ["自然", "然言", "言語", "語処", "処理"], "long runs give bigrams"
    assert tokens("great 😂😂 👍🏽") == ["great", "😂", "😂", "👍"]
    assert all(len(t) <= 3 for t in tokens("ภาษาไทยง่ายมาก")), "Thai bigrams of graphemes"


def test_a_class_with_no_words_is_named_by_its_frequent_texts() -> None:
    docs = {
        0: [("This.", 40), ("this.", 10), ("Same here", 30)],
        1: [("rocket orbit launch", 1), ("orbit rocket fuel", 1)],
        2: [],
        3: [(HUGE, 1)],
    }
    kw = describe(docs, [0, 1, 2, 3], 5)
    assert kw[0].source == "texts" and kw[0].words[0] == ("This.", pytest.approx(50 / 80))
    assert kw[1].source == "words" and kw[1].first in {"orbit", "rocket"}
    assert kw[2].source == "none" and kw[2].words == [(UNAVAILABLE, 0.0)]
    assert kw[3].source == "texts" and len(kw[3].first) == MAX_TOKEN_CHARS and kw[3].first.endswith("…")
    assert frequent_texts([("  a \n b ", 2)]) == [("a b", 1.0)]
    assert shorten("   ") == "(empty text)"
    assert class_tfidf({0: ["the and of"]}, 3) == {0: []}


def test_no_cluster_is_nameless_on_a_corpus_built_to_provoke_it(tmp_path: Path) -> None:
    x, labels = planted(PlantedSpec(n=1500, clusters=5, seed=4, noise_share=0.0, spread=0.6))
    write_run(tmp_path, x, provoking_texts(labels), files=3)
    assert main(["--data-root", str(tmp_path), "--min-cluster-size", "60", *FAST]) == 0
    out = tmp_path / "clusters"
    summary = json.loads((out / "clusters_summary.json").read_text())
    assert summary["clusters"] >= 4
    sources = set()
    for c in summary["cluster_list"]:
        words = [w for w, _ in c["keywords"]]
        assert words, f"cluster {c['id']} has keywords"
        assert all(0 < len(w) <= MAX_TOKEN_CHARS for w in words), words
        assert not any(w in STOP_WORDS or is_punctuation(w) for w in words), words
        sources.add(c["keywords_from"])
        if c["keywords_from"] == "texts":
            assert set(words) <= {f"{r}." for r in REPLIES}, "short replies, merged across punctuation"
        if any("東京" in w or "駅" in w or "旅行" in w for w in words):
            sources.add("japanese")
        if any(w in EMOJI for w in words):
            sources.add("emoji")
    assert {"words", "texts", "japanese", "emoji"} <= sources
    md = (out / "report.md").read_text()
    assert max(len(line) for line in md.splitlines()) < 2_000, "no 200,000-character line"
