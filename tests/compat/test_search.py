"""Search on many/ with every query type; expected keys are computed in Python
from the metadata formulas in docs/demo.md.

Semantics (what our server implements):
- nodes lacking the key do not match Eq/NotEq/Comparison/In/NotIn/Contains,
  except NotIn with an empty list, which matches everything;
- Comparison compares numbers numerically;
- Like is case-sensitive SQL LIKE with % and _;
- FullText is a case-insensitive whole-word match against any string value
  in the metadata (recursively);
- Contains: the list at key contains the value;
- Regex: re.search semantics, case_sensitive honoured.
"""

import re

import pytest
from tiled.queries import (
    Comparison,
    Contains,
    Eq,
    FullText,
    In,
    Key,
    KeyPresent,
    KeysFilter,
    Like,
    NotEq,
    NotIn,
    Regex,
    SpecQuery,
    SpecsQuery,
    StructureFamilyQuery,
)

from demo_values import MANY, MANY_KEYS, _MISSING, keys_where, lookup, md_where, strings_in


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fulltext(text):
    word = text.lower()
    return keys_where(
        lambda e: any(
            word in re.findall(r"\w+", s.lower()) for s in strings_in(e["metadata"])
        )
    )


def like(key, pattern):
    rx = "".join(
        ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern
    )
    return md_where(key, lambda v: isinstance(v, str) and re.fullmatch(rx, v, re.S) is not None)


def regex(key, pattern, case_sensitive=True):
    flags = 0 if case_sensitive else re.IGNORECASE
    return md_where(key, lambda v: isinstance(v, str) and re.search(pattern, v, flags) is not None)


def compare(key, op, value):
    ops = {
        "lt": lambda a: a < value,
        "gt": lambda a: a > value,
        "le": lambda a: a <= value,
        "ge": lambda a: a >= value,
    }
    return md_where(key, lambda v: _is_number(v) and ops[op](v))


def specs(include, exclude=()):
    return keys_where(
        lambda e: all(s in e["specs"] for s in include)
        and not any(s in e["specs"] for s in exclude)
    )


def not_in(key, values):
    if not values:
        return list(MANY_KEYS)
    return md_where(key, lambda v: v not in values)


CASES = [
    # Eq / Key ==
    ("eq-color", Eq("color", "red"), md_where("color", lambda v: v == "red")),
    ("eq-int", Eq("i", 10), ["item_0010"]),
    ("eq-float", Eq("score", 2.5), ["item_0010"]),
    ("eq-nested", Eq("nested.label", "l3"), md_where("nested.label", lambda v: v == "l3")),
    ("eq-nested-int", Eq("nested.x", 0), md_where("nested.x", lambda v: v == 0)),
    ("eq-list", Eq("tags", ["odd", "fizz"]), md_where("tags", lambda v: v == ["odd", "fizz"])),
    ("eq-missing-key", Eq("nope", 1), []),
    ("eq-no-match", Eq("color", "purple"), []),
    ("eq-optional", Eq("optional", 14), ["item_0014"]),
    ("key-eq", Key("color") == "blue", md_where("color", lambda v: v == "blue")),
    # NotEq / Key !=
    ("noteq-color", NotEq("color", "red"), md_where("color", lambda v: v != "red")),
    ("noteq-optional-skips-missing", NotEq("optional", 0), md_where("optional", lambda v: v != 0)),
    ("key-ne", Key("group") != 3, md_where("group", lambda v: v != 3)),
    # Comparison / Key < > <= >=
    ("cmp-gt-score", Comparison("gt", "score", 200), compare("score", "gt", 200)),
    ("cmp-lt-score-numeric", Comparison("lt", "score", 9), compare("score", "lt", 9)),
    ("cmp-ge-i", Comparison("ge", "i", 990), compare("i", "ge", 990)),
    ("cmp-le-i", Comparison("le", "i", 5), compare("i", "le", 5)),
    ("cmp-lt-i-100-numeric", Comparison("lt", "i", 100), compare("i", "lt", 100)),
    ("cmp-gt-float-vs-int", Comparison("gt", "score", 249.5), compare("score", "gt", 249.5)),
    ("cmp-nested", Comparison("ge", "nested.x", 6), compare("nested.x", "ge", 6)),
    ("cmp-optional", Comparison("lt", "optional", 50), compare("optional", "lt", 50)),
    ("key-gt", Key("score") > 9, compare("score", "gt", 9)),
    ("key-lt", Key("i") < 3, compare("i", "lt", 3)),
    ("key-ge", Key("group") >= 9, compare("group", "ge", 9)),
    ("key-le", Key("score") <= 0.5, compare("score", "le", 0.5)),
    # Contains
    ("contains-fizz", Contains("tags", "fizz"), md_where("tags", lambda v: "fizz" in v)),
    ("contains-odd", Contains("tags", "odd"), md_where("tags", lambda v: "odd" in v)),
    ("contains-none", Contains("tags", "buzz"), []),
    # In / NotIn (including empty lists)
    ("in-color", In("color", ["red", "blue"]), md_where("color", lambda v: v in ["red", "blue"])),
    ("in-group", In("group", [1, 3]), md_where("group", lambda v: v in [1, 3])),
    ("in-nested", In("nested.x", [0]), md_where("nested.x", lambda v: v == 0)),
    ("in-optional", In("optional", [0, 7, 14, 700, 3]), ["item_0000", "item_0007", "item_0014", "item_0700"]),
    ("in-empty", In("color", []), []),
    ("notin-color", NotIn("color", ["red", "green"]), not_in("color", ["red", "green"])),
    ("notin-optional-skips-missing", NotIn("optional", [0, 7]), not_in("optional", [0, 7])),
    ("notin-empty", NotIn("color", []), list(MANY_KEYS)),
    ("notin-empty-missing-key", NotIn("optional", []), list(MANY_KEYS)),
    # KeysFilter
    ("keysfilter", KeysFilter(["item_0003", "item_0001", "nope"]), ["item_0001", "item_0003"]),
    ("keysfilter-empty", KeysFilter([]), []),
    # KeyPresent
    ("keypresent", KeyPresent("optional"), keys_where(lambda e: "optional" in e["metadata"])),
    ("keyabsent", KeyPresent("optional", exists=False), keys_where(lambda e: "optional" not in e["metadata"])),
    ("keypresent-nested", KeyPresent("nested.label"), list(MANY_KEYS)),
    ("keyabsent-nested", KeyPresent("nested.nope", exists=False), list(MANY_KEYS)),
    ("keypresent-nope", KeyPresent("nope"), []),
    # Regex
    ("regex-name", Regex("name", r"item 1\d$"), regex("name", r"item 1\d$")),
    ("regex-search-not-match", Regex("description", "sample from group 7"), regex("description", "sample from group 7")),
    ("regex-case-insensitive", Regex("color", "^R", case_sensitive=False), regex("color", "^R", False)),
    ("regex-case-sensitive", Regex("color", "^R", case_sensitive=True), []),
    ("regex-nested", Regex("nested.label", "^l[34]$"), regex("nested.label", "^l[34]$")),
    ("regex-alternation", Regex("name", "^item (5|50|500)$"), ["item_0005", "item_0050", "item_0500"]),
    # Like
    ("like-underscore", Like("name", "item 1_"), like("name", "item 1_")),
    ("like-prefix", Like("color", "r%"), like("color", "r%")),
    ("like-case-sensitive", Like("color", "R%"), []),
    ("like-suffix", Like("description", "%group 3"), like("description", "%group 3")),
    ("like-middle", Like("description", "A _r% sample%"), like("description", "A _r% sample%")),
    ("like-exact", Like("name", "item 42"), ["item_0042"]),
    # FullText
    ("fulltext-red", FullText("red"), fulltext("red")),
    ("fulltext-case-insensitive", FullText("RED"), fulltext("red")),
    ("fulltext-list-values", FullText("fizz"), fulltext("fizz")),
    ("fulltext-nested-values", FullText("l3"), fulltext("l3")),
    ("fulltext-whole-word", FullText("re"), []),
    ("fulltext-everything", FullText("sample"), list(MANY_KEYS)),
    ("fulltext-nothing", FullText("zebra"), []),
    # Specs
    ("specs-quad", SpecsQuery(["quad"]), specs(["quad"])),
    ("specs-both", SpecsQuery(["quad", "pent"]), specs(["quad", "pent"])),
    ("specs-exclude", SpecsQuery(["pent"], exclude=["quad"]), specs(["pent"], ["quad"])),
    ("specs-exclude-only", SpecsQuery([], exclude=["quad", "pent"]), specs([], ["quad", "pent"])),
    ("specquery", SpecQuery("pent"), specs(["pent"])),
    # Structure family
    ("family-array", StructureFamilyQuery("array"), keys_where(lambda e: e["family"] == "array")),
    ("family-container", StructureFamilyQuery("container"), keys_where(lambda e: e["family"] == "container")),
    ("family-table", StructureFamilyQuery("table"), []),
]


def test_expectations_are_not_trivial():
    # Guard against a broken expectation helper silently expecting [] or all.
    sizes = {name: len(expected) for name, _, expected in CASES}
    assert sizes["eq-color"] == 334
    assert sizes["fulltext-red"] == 334
    assert sizes["like-underscore"] == 10
    assert sizes["cmp-lt-score-numeric"] == 36
    assert sizes["keypresent"] == 143
    assert sizes["notin-optional-skips-missing"] == 141
    assert sizes["fulltext-nested-values"] == 200
    assert sizes["specs-exclude"] == 150


@pytest.mark.parametrize("query, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_search(client, query, expected):
    results = client["many"].search(query)
    assert list(results) == expected
    assert len(results) == len(expected)


@pytest.mark.parametrize(
    "queries, expected",
    [
        (
            [Eq("color", "red"), Comparison("gt", "score", 200)],
            keys_where(lambda e: e["metadata"]["color"] == "red" and e["metadata"]["score"] > 200),
        ),
        (
            # two queries of the same type are zipped by position
            [Eq("color", "red"), Eq("group", 3)],
            keys_where(lambda e: e["metadata"]["color"] == "red" and e["metadata"]["group"] == 3),
        ),
        (
            [Key("i") >= 100, Key("i") < 110, Key("nested.x") != 3],
            keys_where(lambda e: 100 <= e["k"] < 110 and e["k"] % 7 != 3),
        ),
        (
            [Like("name", "item 1%"), Like("description", "%blue%"), FullText("odd")],
            keys_where(
                lambda e: e["metadata"]["name"].startswith("item 1")
                and e["metadata"]["color"] == "blue"
                and e["k"] % 2 == 1
            ),
        ),
        (
            [In("group", [1, 2]), NotIn("color", ["green"]), SpecsQuery(["quad"])],
            keys_where(
                lambda e: e["metadata"]["group"] in (1, 2)
                and e["metadata"]["color"] != "green"
                and "quad" in e["specs"]
            ),
        ),
        (
            [StructureFamilyQuery("array"), Contains("tags", "fizz"), KeyPresent("optional")],
            keys_where(lambda e: e["k"] % 2 == 1 and e["k"] % 3 == 0 and e["k"] % 7 == 0),
        ),
    ],
    ids=["eq+cmp", "eq+eq", "cmp+cmp+noteq", "like+like+fulltext", "in+notin+specs", "family+contains+present"],
)
def test_chained_search(client, queries, expected):
    node = client["many"]
    for q in queries:
        node = node.search(q)
    assert expected, "expectation should not be empty"
    assert list(node) == expected
    assert len(node) == len(expected)


def test_search_then_getitem(client):
    results = client["many"].search(Eq("color", "red"))
    node = results["item_0003"]
    assert node.metadata["i"] == 3
    with pytest.raises(KeyError):
        results["item_0001"]  # exists in many/ but is green


def test_search_items_carry_metadata(client):
    results = client["many"].search(Eq("group", 7))
    for key, node in results.items():
        assert node.metadata["group"] == 7
        assert key == "item_%04d" % node.metadata["i"]


def test_search_results_paginate(client):
    # 666 results: more than one page, filters re-sent with every page.
    results = client["many"].search(NotEq("color", "red"))
    keys = list(results)
    assert len(keys) == 666
    assert keys == md_where("color", lambda v: v != "red")
    assert results.keys()[-1] == "item_0998"
    assert results.keys()[0] == "item_0001"


def test_search_with_sort(client):
    results = client["many"].search(Eq("group", 5)).sort(("score", -1))
    expected = sorted(md_where("group", lambda v: v == 5), reverse=True)
    assert list(results) == expected


def test_search_on_subcontainer_without_match(client):
    assert list(client["dtypes"].search(Eq("color", "red"))) == []


def test_lookup_sanity():
    assert lookup(MANY[7]["metadata"], "optional") == 7
    assert lookup(MANY[8]["metadata"], "optional") is _MISSING
