"""Array reads through the upstream client: full reads, slices, blocks, dask."""

import dask.array
import numpy as np
import pytest

from demo_values import ARRAYS

S = slice  # short alias for the parametrize tables below

def index(full, key):
    """`full[key]` as an array that keeps `full`'s dtype even for a single element."""
    out = full[key]
    if not isinstance(out, np.ndarray):
        out = np.array(out, dtype=full.dtype)
    return out


FULL_READ_PATHS = sorted(
    p
    for p in ARRAYS
    if p.split("/")[0] in ("dtypes", "scalars", "nested") and p != "nested/images/big_image"
)


def assert_same(actual, expected):
    """Same dtype (incl. byte order), shape and values."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape
    if expected.dtype.names:
        for name in expected.dtype.names:
            np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    else:
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("path", FULL_READ_PATHS)
def test_full_read(client, path):
    spec = ARRAYS[path]
    assert_same(client[path].read(), spec.full())


@pytest.mark.parametrize("path", ["dtypes/float64_big_endian", "dtypes/int32_big_endian"])
def test_big_endian_byte_order_kept(client, path):
    arr = client[path].read()
    assert arr.dtype.byteorder == ">"
    # Same values as computed natively.
    np.testing.assert_array_equal(arr.astype(arr.dtype.newbyteorder("=")), ARRAYS[path].full())


def test_structured_fields(client):
    arr = client["dtypes/structured"].read()
    assert arr.dtype.names == ("x", "y", "name")
    assert arr.dtype["x"] == np.dtype("<f8")
    assert arr.dtype["y"] == np.dtype("<i4")
    assert arr.dtype["name"] == np.dtype("S4")
    assert arr["name"][23] == b"n23"
    expected = ARRAYS["dtypes/structured"].full()
    np.testing.assert_array_equal(arr["y"], expected["y"])


@pytest.mark.parametrize(
    "path, value",
    [
        ("scalars/pi", 3.141592653589793),
        ("scalars/e", 2.718281828459045),
        ("scalars/answer", 42),
        ("scalars/negative", -7),
        ("scalars/yes", True),
    ],
)
def test_scalar_is_0d(client, path, value):
    node = client[path]
    assert node.shape == ()
    arr = node.read()
    assert arr.shape == ()
    assert arr.ndim == 0
    assert arr.dtype == ARRAYS[path].dtype
    assert arr.item() == value


def test_unicode_and_bytes_values(client):
    assert client["dtypes/unicode"].read()[42] == "u42"
    assert client["dtypes/bytes"].read()[99] == b"b99"


def test_datetime_values(client):
    arr = client["dtypes/datetime64"].read()
    assert arr.dtype == np.dtype("<M8[ns]")
    lo = np.datetime64(1_600_000_000_000_000_000, "ns")
    assert (arr >= lo).all() and (arr < lo + np.timedelta64(10**15, "ns")).all()


# --------------------------------------------------------------------------
# Slicing: every key is compared with NumPy slicing of the expected array.
# --------------------------------------------------------------------------

SLICES_1D = [
    S(None, None, -1),
    S(8, 2, -2),
    S(-3, None),
    5,
    -1,
    -100,
    S(5, 5),
    S(10, 90, 7),
    S(-10, -2),
    S(95, 200),
    S(None, -95, -3),
    S(99, None, -1),
    S(None, None, 33),
    S(50, 49),
    S(-1, -101, -1),
    S(3, 4),
]

SLICES_2D = [
    3,
    (-1, S(None, None, -1)),
    (S(2, 15, 3), S(-5, None)),
    (S(None), 7),
    (S(None, None, -2), S(None, None, -3)),
    (S(5, 5), S(None)),
    (S(1, -1), S(28, 3, -4)),
    (-20, -30),
    (S(6, 8), S(10, 12)),  # straddles block boundaries on both axes
    (S(19, 0, -6), 29),
]

SLICES_3D = [
    (S(None, None, -1), 3, S(2, 8, 2)),
    (0, 0, 0),
    (S(4, 6), S(4, 6), S(4, 6)),
    (S(-2, None), S(None), -1),
]

SLICES_5D = [
    (1, S(None), S(None, None, -2), 3, S(1, 7, 2)),
    (-1, -1, -1, -1, -1),
    (S(None), S(2, 4), S(None, None, -1), 0),
    (S(1, 3), 4, S(2, 5), S(6, 0, -3), S(None, None, 3)),
    (Ellipsis, 2),
]


def _ids(keys):
    return [repr(k).replace(" ", "") for k in keys]


@pytest.mark.parametrize("key", SLICES_1D, ids=_ids(SLICES_1D))
@pytest.mark.parametrize("path", ["dtypes/int64", "dtypes/float32", "dtypes/unicode"])
def test_slice_1d(client, path, key):
    expected = index(ARRAYS[path].full(), key)
    assert_same(client[path][key], expected)


@pytest.mark.parametrize("key", SLICES_1D[:6], ids=_ids(SLICES_1D[:6]))
def test_slice_structured(client, key):
    expected = index(ARRAYS["dtypes/structured"].full(), key)
    assert_same(client["dtypes/structured"][key], expected)


@pytest.mark.parametrize("key", SLICES_2D, ids=_ids(SLICES_2D))
def test_slice_2d(client, key):
    expected = index(ARRAYS["dtypes/int64_2d"].full(), key)
    assert_same(client["dtypes/int64_2d"][key], expected)


@pytest.mark.parametrize("key", SLICES_2D, ids=_ids(SLICES_2D))
def test_slice_2d_read_method(client, key):
    expected = index(ARRAYS["nested/images/small_image"].full(), key)
    assert_same(client["nested/images/small_image"].read(slice=key), expected)


@pytest.mark.parametrize("key", SLICES_3D, ids=_ids(SLICES_3D))
def test_slice_3d(client, key):
    expected = index(ARRAYS["nested/cubes/tiny_cube"].full(), key)
    assert_same(client["nested/cubes/tiny_cube"][key], expected)


@pytest.mark.parametrize("key", SLICES_5D, ids=_ids(SLICES_5D))
def test_slice_5d(client, key):
    expected = index(ARRAYS["nested/cubes/tiny_hypercube"].full(), key)
    assert_same(client["nested/cubes/tiny_hypercube"][key], expected)


BIG_SLICES = [
    (S(None, 10), S(None, 10)),
    (S(1020, 1030), S(3070, 4100, 50)),  # crosses several 1024-blocks
    (S(2040, 2060), S(1000, 1100)),
    (S(9990, None), S(-5, None)),  # inside the last (784) block
    (5000, 5000),
    (S(None, None, -1000), S(None, None, -1000)),
    (-1, S(9000, None, 7)),
    (S(1023, 1025), S(None)),  # two full rows across every column block
]


@pytest.mark.parametrize("key", BIG_SLICES, ids=_ids(BIG_SLICES))
def test_big_image_slices(client, key):
    node = client["nested/images/big_image"]
    expected = ARRAYS["nested/images/big_image"].region(key)
    assert_same(node[key], expected)


def test_big_image_corner_values(client):
    got = client["nested/images/big_image"][:10, :10]
    assert got.shape == (10, 10)
    assert got.dtype == np.dtype("<f8")
    assert ((got >= 0) & (got < 1)).all()
    np.testing.assert_array_equal(got, ARRAYS["nested/images/big_image"].region((S(0, 10), S(0, 10))))


def test_empty_slice_never_errors(client):
    out = client["dtypes/int64"][5:5]
    assert out.shape == (0,)
    assert out.dtype == np.dtype("<i8")


# --------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------

BLOCKS = [
    ("nested/images/medium_image", (0, 0)),
    ("nested/images/medium_image", (0, 1)),
    ("nested/images/medium_image", (1, 0)),
    ("nested/images/medium_image", (2, 1)),
    ("dtypes/int64_2d", (0, 0)),
    ("dtypes/int64_2d", (0, 1)),
    ("dtypes/int64_2d", (1, 2)),
    ("dtypes/int64_2d", (2, 2)),
    ("dtypes/float64", (1,)),
    ("dtypes/uint16", (0,)),
    ("dtypes/structured", (1,)),
    ("dtypes/float64_big_endian", (1,)),
    ("nested/images/small_image", (2, 2)),
    ("nested/images/small_image", (1, 0)),
    ("nested/cubes/tiny_hypercube", (1, 0, 1, 0, 1)),
    ("nested/cubes/tiny_cube", (1, 0, 1)),
    ("nested/images/big_image", (9, 9)),
    ("nested/images/big_image", (0, 9)),
    ("nested/images/big_image", (3, 5)),
]


@pytest.mark.parametrize("path, block", BLOCKS)
def test_read_block(client, path, block):
    spec = ARRAYS[path]
    bounds = spec.block_bounds(block)
    expected = spec.region(bounds)
    expected_shape = tuple(spec.chunks[d][b] for d, b in enumerate(block))
    got = client[path].read_block(block)
    assert got.shape == expected_shape
    assert_same(got, expected)


@pytest.mark.parametrize(
    "path, block, key",
    [
        ("nested/images/medium_image", (2, 1), (S(0, 10), S(-5, None))),
        ("nested/images/medium_image", (1, 1), (S(None, None, -50), 3)),
        ("dtypes/int64_2d", (2, 2), (S(None, None, -1), S(1, 7, 2))),
    ],
)
def test_read_block_with_slice(client, path, block, key):
    spec = ARRAYS[path]
    whole_block = spec.region(spec.block_bounds(block))
    got = client[path].read_block(block, slice=key)
    assert_same(got, index(whole_block, key))


def test_read_block_out_of_range_raises(client):
    with pytest.raises(IndexError):
        client["dtypes/float64"].read_block((2,))


# --------------------------------------------------------------------------
# dask structure clients
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["dtypes/float64", "dtypes/int64_2d", "nested/images/medium_image", "dtypes/structured"]
)
def test_dask_read(dask_client, path):
    lazy = dask_client[path].read()
    assert isinstance(lazy, dask.array.Array)
    assert lazy.shape == ARRAYS[path].shape
    assert lazy.dtype == ARRAYS[path].dtype
    assert_same(lazy.compute(), ARRAYS[path].full())


def test_dask_compute_alias(dask_client):
    assert_same(dask_client["nested/cubes/tiny_cube"].compute(), ARRAYS["nested/cubes/tiny_cube"].full())


def test_dask_slice(dask_client):
    lazy = dask_client["nested/images/big_image"][1020:1030, 2040:2050]
    assert isinstance(lazy, dask.array.Array)
    assert_same(lazy.compute(), ARRAYS["nested/images/big_image"].region((S(1020, 1030), S(2040, 2050))))


def test_dask_read_block(dask_client):
    lazy = dask_client["dtypes/int64_2d"].read_block((1, 1))
    assert isinstance(lazy, dask.array.Array)
    spec = ARRAYS["dtypes/int64_2d"]
    assert_same(lazy.compute(), spec.region(spec.block_bounds((1, 1))))


# --------------------------------------------------------------------------
# Reads of 100 MiB or more are split by the client into several requests;
# reversed ones end with an empty stop (e.g. `24::-1`).
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [(S(None, 1400), S(None)), (S(1399, None, -1), S(None))],
    ids=["forward", "reversed"],
)
def test_big_image_split_read(client, key):
    node = client["nested/images/big_image"]
    assert node.fetch_count(key) > 1  # really split into several requests
    got = node[key]
    assert got.shape == (1400, 10000)
    expected = ARRAYS["nested/images/big_image"].region(key)
    np.testing.assert_array_equal(got, expected)
