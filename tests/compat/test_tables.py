"""Table reads through the upstream client."""

import dask.dataframe
import numpy as np
import pandas as pd
import pytest

from demo_values import TABLES, WIDE_COLUMNS, partition_bounds, table_frame


def assert_frame_matches(actual: pd.DataFrame, expected: pd.DataFrame):
    actual = actual.reset_index(drop=True)
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    for column in expected.columns:
        a, e = actual[column], expected[column]
        if column == "label":
            assert pd.api.types.is_string_dtype(a.dtype), a.dtype
            assert a.astype(object).tolist() == e.astype(object).tolist()
        else:
            assert a.dtype == e.dtype, (column, a.dtype, e.dtype)
            np.testing.assert_array_equal(a.to_numpy(), e.to_numpy(), err_msg=column)


@pytest.mark.parametrize("path", sorted(TABLES))
def test_read_whole_table(client, path):
    assert_frame_matches(client[path].read(), table_frame(path))


def test_short_table_column_dtypes(client):
    df = client["tables/short_table"].read()
    assert df["i"].dtype == np.dtype("int64")
    assert df["x"].dtype == np.dtype("float64")
    assert df["flag"].dtype == np.dtype("bool")
    assert df["time"].dtype == np.dtype("datetime64[ns]")
    assert pd.api.types.is_string_dtype(df["label"].dtype)
    assert df["time"][3] == pd.Timestamp("2020-09-13 12:26:43")
    assert df["label"][7] == "s7"


@pytest.mark.parametrize("path", sorted(TABLES))
def test_table_structure(client, path):
    node = client[path]
    assert list(node.columns) == TABLES[path]["columns"]
    assert list(node) == TABLES[path]["columns"]
    assert node.structure().npartitions == TABLES[path]["npartitions"]


def test_arrow_schema_meta_dtypes(client):
    meta = client["tables/short_table"].structure().meta
    assert list(meta.columns) == ["i", "x", "label", "flag", "time"]
    assert len(meta) == 0
    assert meta["i"].dtype == np.dtype("int64")
    assert meta["x"].dtype == np.dtype("float64")
    assert meta["flag"].dtype == np.dtype("bool")
    assert meta["time"].dtype == np.dtype("datetime64[ns]")


@pytest.mark.parametrize(
    "path, columns",
    [
        ("tables/short_table", ["x", "label"]),
        ("tables/short_table", ["time"]),
        ("tables/short_table", ["flag", "i"]),  # order as requested
        ("tables/long_table", ["i", "flag"]),
        ("tables/wide_table", ["c005", "c099", "c000"]),
    ],
)
def test_read_columns(client, path, columns):
    df = client[path].read(columns=columns)
    assert list(df.columns) == columns
    assert_frame_matches(df, table_frame(path)[columns])


def test_read_many_columns_uses_post(client):
    # A long column list makes the client POST the list (JSON body) to
    # table/partition instead of a GET; lower the client's URL limit to force it.
    columns = WIDE_COLUMNS[::-1]
    node = client["tables/wide_table"]
    node.URL_CHARACTER_LIMIT = 100
    df = node.read(columns=columns)
    assert list(df.columns) == columns
    assert_frame_matches(df, table_frame("tables/wide_table")[columns])


@pytest.mark.parametrize("partition", range(5))
def test_long_table_read_partition(client, partition):
    start, stop = partition_bounds("tables/long_table", partition)
    df = client["tables/long_table"].read_partition(partition)
    assert len(df) == 20_000
    assert_frame_matches(df, table_frame("tables/long_table", start, stop))


def test_read_partition_with_columns(client):
    df = client["tables/long_table"].read_partition(3, columns=["label", "x"])
    assert_frame_matches(df, table_frame("tables/long_table", 60_000, 80_000)[["label", "x"]])


def test_read_partition_out_of_range(client):
    with pytest.raises(IndexError):
        client["tables/short_table"].read_partition(1)


@pytest.mark.parametrize("column", ["i", "x", "flag", "time"])
def test_column_access_as_array(client, column):
    node = client["tables/short_table"][column]
    arr = node.read()
    expected = table_frame("tables/short_table")[column].to_numpy()
    assert arr.shape == (10,)
    np.testing.assert_array_equal(arr, expected)


def test_wide_column_access(client):
    arr = client["tables/wide_table"]["c042"].read()
    np.testing.assert_array_equal(arr, np.arange(10) * 100 + 42.0)


def test_missing_column_raises_keyerror(client):
    with pytest.raises(KeyError):
        client["tables/short_table"]["nope"]


def test_dask_table_read(dask_client):
    ddf = dask_client["tables/long_table"].read()
    assert isinstance(ddf, dask.dataframe.DataFrame)
    assert ddf.npartitions == 5
    assert list(ddf.columns) == ["i", "x", "label", "flag", "time"]
    assert_frame_matches(ddf.compute(), table_frame("tables/long_table"))


def test_dask_table_columns_and_partition(dask_client):
    ddf = dask_client["tables/long_table"].read(columns=["x"])
    assert isinstance(ddf, dask.dataframe.DataFrame)
    assert float(ddf["x"].sum().compute()) == float(np.arange(100_000).sum() * 0.5)
    part = dask_client["tables/long_table"].read_partition(4)
    assert isinstance(part, dask.dataframe.DataFrame)
    assert_frame_matches(part.compute(), table_frame("tables/long_table", 80_000, 100_000))
