"""
Tests for L{tenantgw.compile.selector}: the C{--namespace-selector} grammar
(that of C{kubectl -l}) and its matching semantics.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.compile.selector import MATCH_ALL, LabelSelector, SelectorError

GOLD = {"tier": "gold", "team": "a"}
SILVER = {"tier": "silver"}
BARE: dict[str, str] = {}
EMPTY_VALUE = {"tier": ""}
PREFIXED = {"example.com/team": "web", "tier": "gold"}
ALL = {"gold": GOLD, "silver": SILVER, "bare": BARE, "empty": EMPTY_VALUE, "prefixed": PREFIXED}


class ParseTests(SynchronousTestCase):
    def matching(self, text: str) -> list[str]:
        selector = LabelSelector.parse(text)
        self.assertEqual(selector.text, text)
        return sorted(name for name, labels in ALL.items() if selector.matches(labels))

    def test_empty_selects_everything(self) -> None:
        for text in ("", "   "):
            self.assertEqual(self.matching(text), sorted(ALL))
        self.assertTrue(MATCH_ALL.matches(BARE))
        self.assertEqual(LabelSelector.parse("").requirements, ())

    def test_equality(self) -> None:
        self.assertEqual(self.matching("tier=gold"), ["gold", "prefixed"])
        self.assertEqual(self.matching("tier==gold"), ["gold", "prefixed"])
        self.assertEqual(self.matching(" tier = gold "), ["gold", "prefixed"])

    def test_inequality_matches_absent_key(self) -> None:
        self.assertEqual(self.matching("tier!=gold"), ["bare", "empty", "silver"])

    def test_empty_value(self) -> None:
        self.assertEqual(self.matching("tier="), ["empty"])
        self.assertEqual(self.matching("tier=="), ["empty"])
        self.assertEqual(self.matching("tier!="), ["bare", "gold", "prefixed", "silver"])

    def test_in(self) -> None:
        self.assertEqual(self.matching("tier in (gold,silver)"), ["gold", "prefixed", "silver"])
        self.assertEqual(self.matching("tier in ( silver )"), ["silver"])
        self.assertEqual(self.matching("tier in(silver)"), ["silver"])

    def test_notin_matches_absent_key(self) -> None:
        self.assertEqual(self.matching("tier notin (gold)"), ["bare", "empty", "silver"])

    def test_exists_and_not_exists(self) -> None:
        self.assertEqual(self.matching("tier"), ["empty", "gold", "prefixed", "silver"])
        self.assertEqual(self.matching("!tier"), ["bare"])
        self.assertEqual(self.matching("! tier"), ["bare"])
        self.assertEqual(self.matching("!team"), ["bare", "empty", "prefixed", "silver"])

    def test_prefixed_key(self) -> None:
        self.assertEqual(self.matching("example.com/team=web"), ["prefixed"])
        self.assertEqual(self.matching("example.com/team"), ["prefixed"])

    def test_requirements_are_anded(self) -> None:
        self.assertEqual(self.matching("tier=gold,team=a"), ["gold"])
        self.assertEqual(self.matching("tier in (gold, silver),!team"), ["prefixed", "silver"])
        self.assertEqual(self.matching("tier,tier!=gold"), ["empty", "silver"])
        self.assertEqual(self.matching("tier=gold,tier=silver"), [])

    def test_commas_inside_parentheses_do_not_split(self) -> None:
        selector = LabelSelector.parse("tier in (gold,silver),team")
        self.assertEqual(len(selector.requirements), 2)

    def test_value_characters(self) -> None:
        labels = {"v": "a-b_c.D9"}
        self.assertTrue(LabelSelector.parse("v=a-b_c.D9").matches(labels))
        self.assertTrue(LabelSelector.parse("v in (x, a-b_c.D9)").matches(labels))

    def test_odd_label_values_do_not_raise(self) -> None:
        labels: Any = {"tier": ["gold"], "n": 1}
        self.assertFalse(LabelSelector.parse("tier in (gold)").matches(labels))
        self.assertTrue(LabelSelector.parse("tier notin (gold)").matches(labels))
        self.assertFalse(LabelSelector.parse("n=1").matches(labels))

    def test_parsed_once_reused(self) -> None:
        selector = LabelSelector.parse("tier=gold")
        self.assertTrue(selector.matches(GOLD))
        self.assertFalse(selector.matches(SILVER))
        self.assertTrue(selector.matches(GOLD))


class MalformedTests(SynchronousTestCase):
    MALFORMED = [
        "=gold",  # no key
        "tier=gold=x",
        "tier=gold silver",
        "tier in (gold",  # unbalanced
        "tier in gold",
        "tier in (gold))",
        "tier) ",
        "tier in ()",  # at least one value
        "tier notin ( , )",
        "!tier in (gold)",  # '!' only with a bare key
        "!tier=gold",
        "tierin(gold)",  # an operator is a word of its own
        "tier in (a b)",
        "tier in (a=b)",
        "tier=-gold",  # values start and end alphanumeric
        "tier=gold-",
        "tier=" + "x" * 64,  # at most 63 characters
        "-tier=gold",
        "ti er=gold",
        "a//b=c",
        "/tier=gold",
        "Example.com/tier=gold",  # prefix is a lower-case DNS subdomain
        "example..com/tier=gold",
        "x" * 64,
        "tier gold",
        "tier ~ gold",
        "tier>1",
        "tier in (gold) extra",
        "!",
    ]

    def test_malformed(self) -> None:
        accepted = []
        for text in self.MALFORMED:
            try:
                LabelSelector.parse(text)
            except SelectorError:
                continue
            accepted.append(text)
        self.assertEqual(accepted, [])

    def test_error_names_the_requirement(self) -> None:
        with self.assertRaises(SelectorError) as raised:
            LabelSelector.parse("tier=gold, team in (a")
        self.assertIn("team in (a", str(raised.exception))

    def test_selector_error_is_a_value_error(self) -> None:
        """Option parsing catches it as a usage error."""
        self.assertTrue(issubclass(SelectorError, ValueError))

    def test_empty_parts_are_ignored(self) -> None:
        self.assertEqual(len(LabelSelector.parse("tier=gold,,team").requirements), 2)
