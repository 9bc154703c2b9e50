"""Pagination, sorting and distinct on many/ (1000 children)."""

import collections
import json

import numpy as np
import pytest
from tiled.queries import Eq

from demo_values import MANY, MANY_KEYS


# --------------------------------------------------------------------------
# Pagination
# --------------------------------------------------------------------------


def test_len(client):
    assert len(client["many"]) == 1000


def test_iterate_all_keys_in_order(client):
    assert list(client["many"]) == MANY_KEYS


def test_iterate_with_large_page_size_is_clamped(client):
    # page[limit]=1000 exceeds upstream's max of 300: the server must clamp,
    # and the client follows links.next to get the rest.
    assert list(client["many"].keys().page_size(1000)) == MANY_KEYS


def test_iterate_with_small_page_size(client):
    assert client["many"].keys().page_size(7)[:30] == MANY_KEYS[:30]
    assert list(client["dtypes"].keys().page_size(2)) == list(client["dtypes"])


@pytest.mark.parametrize(
    "key, expected",
    [
        (0, "item_0000"),
        (1, "item_0001"),
        (537, "item_0537"),
        (-1, "item_0999"),
        (-2, "item_0998"),
        (-1000, "item_0000"),
    ],
)
def test_keys_index(client, key, expected):
    assert client["many"].keys()[key] == expected


@pytest.mark.parametrize(
    "key",
    [
        slice(None, 5),
        slice(10, 20),
        slice(295, 305),
        slice(995, None),
        slice(998, 1010),
        slice(-1, -4, -1),
        slice(None, None, -1),
        slice(1000, None),
    ],
    ids=repr,
)
def test_keys_slice(client, key):
    assert client["many"].keys()[key] == MANY_KEYS[key]


def test_keys_index_out_of_range(client):
    with pytest.raises(IndexError):
        client["many"].keys()[1000]
    with pytest.raises(IndexError):
        client["many"].keys()[-1001]


def test_head_tail_first_last(client):
    keys = client["many"].keys()
    assert keys.first() == "item_0000"
    assert keys.last() == "item_0999"
    assert keys.head(3) == MANY_KEYS[:3]
    assert keys.tail(3) == MANY_KEYS[-3:]


def test_values_tail(client):
    values = client["many"].values().tail(3)
    assert [v.metadata["i"] for v in values] == [997, 998, 999]
    np.testing.assert_array_equal(values[-1].read(), [999, 1000, 1001])
    assert values[0].structure_family == "array"
    assert values[1].structure_family == "container"


def test_values_last(client):
    assert client["many"].values().last().metadata["name"] == "item 999"
    assert client["many"].values()[-3].metadata["name"] == "item 997"


def test_items_slice(client):
    items = client["many"].items()[500:503]
    assert [k for k, _ in items] == MANY_KEYS[500:503]
    assert [v.metadata["i"] for _, v in items] == [500, 501, 502]
    assert client["many"].items()[-1][0] == "item_0999"


def test_values_iteration_across_pages(client):
    n = 0
    for n, node in enumerate(client["many"].values().page_size(250)):
        assert node.metadata["i"] == n
    assert n == 999


# --------------------------------------------------------------------------
# Sorting
# --------------------------------------------------------------------------


def sorted_keys(*sorting):
    """Python-side sort of many/ by (key, direction) pairs; ties keep tree order."""
    entries = list(MANY)
    for key, direction in reversed(sorting):
        def getter(e, key=key):
            v = e["metadata"]
            for part in key.split("."):
                v = v[part]
            return v

        entries.sort(key=getter, reverse=direction < 0)
    return [e["key"] for e in entries]


SORTS = [
    (("score", -1),),
    (("score", 1),),
    (("i", -1),),
    (("color", 1), ("i", -1)),
    (("color", -1), ("score", 1)),
    (("group", 1), ("i", 1)),
    (("group", -1), ("i", -1)),
    (("nested.x", -1), ("i", 1)),
    (("nested.label", 1), ("score", -1)),
    (("name", 1),),
    (("name", -1),),
]


@pytest.mark.parametrize("sorting", SORTS, ids=repr)
def test_sort(client, sorting):
    assert list(client["many"].sort(*sorting)) == sorted_keys(*sorting)


def test_sort_numbers_numerically(client):
    keys = client["many"].sort(("score", 1)).keys()[:12]
    # As text, "10.0" < "2.0" would put item_0040 before item_0008.
    assert keys == MANY_KEYS[:12]
    keys = client["many"].sort(("i", -1)).keys()[:3]
    assert keys == ["item_0999", "item_0998", "item_0997"]


def test_sort_strings_as_text(client):
    keys = client["many"].sort(("name", 1)).keys()[:4]
    assert keys == ["item_0000", "item_0001", "item_0010", "item_0100"]


def test_sorted_last_uses_reversed_sort(client):
    node = client["many"].sort(("score", -1))
    assert node.keys()[0] == "item_0999"
    assert node.keys()[-1] == "item_0000"
    assert node.keys().tail(2) == ["item_0001", "item_0000"]
    node = client["many"].sort(("color", 1), ("i", -1))
    assert node.keys()[-1] == sorted_keys(("color", 1), ("i", -1))[-1]


def test_sort_then_search(client):
    node = client["many"].sort(("score", -1)).search(Eq("group", 0))
    assert list(node) == [e["key"] for e in reversed(MANY) if e["metadata"]["group"] == 0]


# --------------------------------------------------------------------------
# Distinct
# --------------------------------------------------------------------------


def _normalise(entries):
    """Order-independent form of a distinct() list."""
    return sorted(
        ((json.dumps(e["value"], sort_keys=True), e["count"]) for e in entries),
    )


def _expected(values, counts=True):
    c = collections.Counter(json.dumps(v, sort_keys=True) for v in values)
    return sorted((v, n if counts else None) for v, n in c.items())


@pytest.mark.parametrize("key", ["color", "group", "nested.label", "nested.x"])
def test_distinct_metadata_counts(client, key):
    out = client["many"].distinct(key, counts=True)
    values = []
    for e in MANY:
        v = e["metadata"]
        for part in key.split("."):
            v = v[part]
        values.append(v)
    assert _normalise(out["metadata"][key]) == _expected(values)


def test_distinct_color_exact(client):
    out = client["many"].distinct("color", counts=True)
    got = {e["value"]: e["count"] for e in out["metadata"]["color"]}
    assert got == {"red": 334, "green": 333, "blue": 333}


def test_distinct_without_counts(client):
    out = client["many"].distinct("color")
    assert sorted(e["value"] for e in out["metadata"]["color"]) == ["blue", "green", "red"]
    assert all(e.get("count") is None for e in out["metadata"]["color"])


def test_distinct_several_keys(client):
    out = client["many"].distinct("color", "group", counts=True)
    assert set(out["metadata"]) == {"color", "group"}
    assert {e["value"]: e["count"] for e in out["metadata"]["group"]} == {g: 100 for g in range(10)}


def test_distinct_structure_families(client):
    out = client["many"].distinct(structure_families=True, counts=True)
    got = {e["value"]: e["count"] for e in out["structure_families"]}
    assert got == {"array": 500, "container": 500}


def test_distinct_specs(client):
    out = client["many"].distinct(specs=True, counts=True)
    got = _normalise(out["specs"])
    expected = _expected([[{"name": s, "version": None} for s in e["specs"]] for e in MANY])
    assert got == expected


def test_distinct_on_search_results(client):
    out = client["many"].search(Eq("color", "red")).distinct("group", counts=True)
    got = {e["value"]: e["count"] for e in out["metadata"]["group"]}
    expected = collections.Counter(e["metadata"]["group"] for e in MANY if e["metadata"]["color"] == "red")
    assert got == dict(expected)
