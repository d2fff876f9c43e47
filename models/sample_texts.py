"""A fixed, deterministic sample of texts for the export's quality gate.

The sample mirrors what workers embed: short replies, ordinary sentences,
posts far beyond 256 tokens (truncation), unicode, emoji, code, URLs, and
empty or whitespace-only texts. Texts are distinct, so one awkward text does
not weigh more than any other. ``calibration`` draws a disjoint set from the
same pool for the int8 smoothing statistics, so the gate never grades the
model on the texts it was calibrated with.
"""

from __future__ import annotations

import random

SENTENCES = [
    "How long should I let sourdough proof before baking it?",
    "The garlic burned because the skillet was far too hot.",
    "Roasting the tomatoes first gives the sauce a much deeper flavour.",
    "Is cast iron really better than stainless steel for searing steak?",
    "My broth turned cloudy after I let it boil instead of simmering.",
    "The telescope finally arrived and the first target was Saturn's rings.",
    "A comet's tail always points away from the Sun, not behind its path.",
    "Why does the Moon look bigger when it sits near the horizon?",
    "The launch was scrubbed twice because of high winds at altitude.",
    "Mars has the tallest volcano in the solar system, Olympus Mons.",
    "The borrow checker rejected my code until I cloned the vector.",
    "A race condition only showed up when the thread pool had eight workers.",
    "Use a context manager so the file is closed even when an exception is raised.",
    "Our database migration locked the table for forty minutes in production.",
    "The async runtime deadlocked because a blocking call ran on the executor.",
    "The striker was offside by a boot, and the goal was rightly disallowed.",
    "Their keeper saved two penalties in the shoot-out to win the cup.",
    "A late transfer deadline deal brought in a left-footed midfielder.",
    "The referee stopped play after a clash of heads near the corner flag.",
    "That derby had more yellow cards than shots on target.",
    "I learned barre chords by practising ten minutes every single morning.",
    "The drummer dragged the tempo during the bridge of the second song.",
    "Vinyl sounds warmer to me, though I cannot prove it in a blind test.",
    "The synth line in the chorus is the hook everyone remembers.",
    "She wrote the lyrics on the back of a train ticket.",
    "Compost needs a balance of green and brown material to heat up.",
    "Prune the roses in late winter, just before the buds break.",
    "Slugs ate every seedling in the greenhouse over a single night.",
    "Mulching the beds cut my watering in half this summer.",
    "The tomatoes split after a heavy rain following a long dry spell.",
    "An index fund with low fees beats most actively managed funds over decades.",
    "Inflation eats into savings that sit in a current account.",
    "Should I overpay the mortgage or invest the difference?",
    "Dividends are taxed differently from capital gains in many countries.",
    "Rebalancing the portfolio once a year keeps the risk where I want it.",
    "The night train from Vienna to Venice was cheaper than flying.",
    "Keep a photo of your passport in your email in case it gets stolen.",
    "The museum is free on the first Sunday of every month.",
    "We missed the connection because the first flight left an hour late.",
    "A backpack under forty litres fits as cabin luggage on most airlines.",
    "The meeting has been moved to Thursday at three in the afternoon.",
    "Please remember to water the plants while I am away.",
    "The report concludes that the bridge needs urgent repairs.",
    "He apologised for the delay and promised to send the files tonight.",
    "Children learn languages faster when they hear them every day.",
    "The quarterly numbers were better than analysts expected.",
    "It rained all weekend, so we stayed in and played board games.",
    "The new library opens at nine and closes at eight on weekdays.",
    "Nobody expected the small bakery to win the national award.",
    "The hospital is hiring nurses for the night shift.",
]

REPLIES = [
    "This.",
    "lol",
    "Same here",
    "Thanks!",
    "Source?",
    "Agreed 👍",
    "No way 😂",
    "+1",
    "ok",
    "Wow",
    "Exactly my point.",
    "Underrated comment.",
    "I disagree, strongly.",
    "Came here to say this.",
    "Happy cake day!",
    "Take my upvote.",
    "Big if true.",
    "Can confirm.",
    "RIP inbox",
    "Edit: typo",
]

ODD = [
    "",
    " ",
    "\n\t ",
    "café naïve Grüße",
    "東京の天気はどうですか",
    "Москва — столица России.",
    "🚀🚀🚀 to the moon",
    "🍕🍕 or 🌮?",
    "ñandú ⚽️ 🎸 €42,00",
    "https://example.com/a/b?c=d&e=f",
    'fn main() { println!("hello"); }',
    "SELECT id, text FROM posts WHERE score > 10;",
    "$$$ !!! ??? ...",
    "ALL CAPS BECAUSE I AM ANGRY",
    "a a a a a a a a a a a a a a a a",
    "1234567890 0987654321",
    "e = mc^2, or so they say",
    "¯\\_(ツ)_/¯",
    "<b>bold</b> &amp; <i>italic</i>",
    "x" * 300,
]


def _pool(rng: random.Random) -> list[str]:
    """Every kind of text, in a fixed order for one seed."""
    texts = list(SENTENCES) + list(REPLIES) + list(ODD)
    for _ in range(120):
        texts.append(" ".join(rng.sample(SENTENCES, k=rng.randint(2, 4))))
    for _ in range(30):
        # Posts far beyond 256 tokens: truncation must match sentence-transformers.
        texts.append(" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(25, 60))))
    for _ in range(30):
        texts.append(f"{rng.choice(REPLIES)} {rng.choice(SENTENCES)} {rng.choice(ODD)}".strip())
    return list(dict.fromkeys(texts))


def quality_sample() -> list[str]:
    """The texts the quality gate grades the exported models on."""
    return _pool(random.Random("embedfleet-quality-v1"))


def calibration() -> list[str]:
    """Texts for activation statistics, disjoint from ``quality_sample``."""
    graded = set(quality_sample())
    rng = random.Random("embedfleet-calibration-v1")
    return [t for t in _pool(rng) if t not in graded][:160]
