"""Lane routing rules (``manager.routing``)."""

from __future__ import annotations

import pytest

from manager.routing import Routes, parse_size


def test_unrouted_jobs_go_to_default() -> None:
    assert Routes().lane("cats", 10**12) == "default"
    assert Routes().lanes() == ["default"]


def test_subreddit_globs_match_case_insensitively_and_the_first_wins() -> None:
    r = Routes.parse(["Ask*=priority", "*science=science", "askhistorians=never"])
    assert r.lane("AskScience", 1) == "priority"
    assert r.lane("askhistorians", 1) == "priority"
    assert r.lane("PopularScience", 1) == "science"
    assert r.lane("cats", 1) == "default"


def test_sizes_pick_the_largest_threshold_reached() -> None:
    r = Routes.parse(sizes=["1M=medium", "1G=huge", "100=small"])
    assert [r.lane("x", n) for n in (99, 100, 1 << 20, (1 << 30) - 1, 1 << 30)] == [
        "default",
        "small",
        "medium",
        "medium",
        "huge",
    ]
    assert r.lanes() == ["default", "huge", "medium", "small"]


def test_subreddit_rules_come_before_size_rules() -> None:
    r = Routes.parse(["cats=pets"], ["1=big"])
    assert (r.lane("cats", 10**9), r.lane("dogs", 10**9)) == ("pets", "big")


@pytest.mark.parametrize(
    "text,value", [("0", 0), ("2048", 2048), ("4K", 4096), ("3m", 3 << 20), ("2GiB", 2 << 30), ("1 TB", 1 << 40)]
)
def test_sizes_parse_with_units(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("rule", ["nolane", "=lane", "cats=", "cats=bad:lane", "cats=has space"])
def test_bad_subreddit_rules_are_refused(rule: str) -> None:
    with pytest.raises(ValueError):
        Routes.parse([rule])


@pytest.mark.parametrize("rule", ["lots=big", "-1=big", "1X=big"])
def test_bad_size_rules_are_refused(rule: str) -> None:
    with pytest.raises(ValueError):
        Routes.parse(sizes=[rule])
