//! Zarr stores through `ZarrFormat`: a v3 hierarchy written here with zarrs
//! (groups, attributes, chunked, compressed and sharded arrays), and, when
//! `TILED_TEST_ZARR_PYTHON` names a python with zarr-python, v2 and v3 stores
//! written by zarr-python.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tiled_adapters::conformance::check_array;
use tiled_adapters::{AdapterError, ArrayAdapter, NodeData};
use tiled_files::zarr::ZarrFormat;
use tiled_files::{Described, FileError, FileFormat};
use tiled_model::StructureFamily;
use tiled_model::slice::NdSlice;
use tiled_model::structure::ArrayStructure;
use zarrs::array::codec::{GzipCodec, ZstdCodec};
use zarrs::array::{Array, ArrayBuilder, ArrayMetadataOptions, ArraySubset, data_type};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::GroupBuilder;

fn attrs(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn child<'a>(d: &'a Described, key: &str) -> &'a Described {
    &d.children
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no child {key}"))
        .1
}

fn keys(d: &Described) -> Vec<&str> {
    d.children.iter().map(|(k, _)| k.as_str()).collect()
}

fn structure(d: &Described) -> ArrayStructure {
    serde_json::from_value(d.structure.clone().expect("structure")).expect("array structure")
}

fn open(store: &Path, d: &Described) -> Arc<dyn ArrayAdapter> {
    let params = d.parameters.clone().expect("parameters");
    match ZarrFormat
        .open(store, &params, StructureFamily::Array)
        .expect("open")
    {
        NodeData::Array(a) => a,
        _ => panic!("not an array"),
    }
}

/// Element values of little-endian bytes.
fn values<T, const N: usize>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().unwrap()))
        .collect()
}

/// Every element of `a` (C order, `shape`) equals `f(index)`, checked
/// through every block and a full read.
fn check_formula<T: PartialEq + std::fmt::Debug, const N: usize>(
    name: &str,
    a: &dyn ArrayAdapter,
    decode: fn([u8; N]) -> T,
    f: impl Fn(&[usize]) -> T,
) {
    let st = a.structure().clone();
    let grid = st.block_grid();
    let nblocks: usize = grid.iter().product();
    for flat in 0..nblocks {
        let mut block = vec![0; grid.len()];
        let mut r = flat;
        for axis in (0..grid.len()).rev() {
            block[axis] = r % grid[axis];
            r /= grid[axis];
        }
        let (offset, shape) = st.block_extent(&block).unwrap();
        let data = a.read_block(&block).unwrap();
        assert_eq!(data.shape, shape, "{name} block {block:?}");
        let got = values(&data.bytes, decode);
        let want: Vec<T> = indices(&shape)
            .iter()
            .map(|i| {
                let g: Vec<usize> = i.iter().zip(&offset).map(|(a, b)| a + b).collect();
                f(&g)
            })
            .collect();
        assert_eq!(got, want, "{name} block {block:?}");
    }
    let full = a
        .read(&NdSlice::default().resolve(&st.shape).unwrap())
        .unwrap();
    let want: Vec<T> = indices(&st.shape).iter().map(|i| f(i)).collect();
    assert_eq!(values(&full.bytes, decode), want, "{name} full read");
}

fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &n in shape {
        out = out
            .into_iter()
            .flat_map(|p| {
                (0..n).map(move |i| {
                    let mut q = p.clone();
                    q.push(i);
                    q
                })
            })
            .collect();
    }
    out
}

fn u16_at(i: &[usize]) -> u16 {
    (i[0] * 100 + i[1] * 10 + i[2]) as u16
}

/// Write array metadata without the `_zarrs` attribute zarrs adds by
/// default.
fn store_metadata(array: &Array<FilesystemStore>) {
    array
        .store_metadata_opt(&ArrayMetadataOptions::default().with_include_zarrs_metadata(false))
        .unwrap();
}

fn write_v3_store(root: &Path) {
    let store = Arc::new(FilesystemStore::new(root).unwrap());
    GroupBuilder::new()
        .attributes(attrs(json!({"title": "root group", "count": 3})))
        .build(store.clone(), "/")
        .unwrap()
        .store_metadata()
        .unwrap();

    let shape = [7usize, 10, 9];
    let images = ArrayBuilder::new(
        shape.iter().map(|&n| n as u64).collect::<Vec<_>>(),
        vec![3u64, 4, 5],
        data_type::uint16(),
        0u16,
    )
    .bytes_to_bytes_codecs(vec![Arc::new(GzipCodec::new(5).unwrap())])
    .dimension_names(Some(["t", "y", "x"]))
    .attributes(attrs(json!({"units": "counts", "nested": {"a": [1, 2]}})))
    .build(store.clone(), "/images")
    .unwrap();
    store_metadata(&images);
    let data: Vec<u16> = indices(&shape).iter().map(|i| u16_at(i)).collect();
    images
        .store_array_subset(&ArraySubset::new_with_shape(images.shape().to_vec()), data)
        .unwrap();

    GroupBuilder::new()
        .attributes(attrs(json!({"kind": "inner"})))
        .build(store.clone(), "/nested")
        .unwrap()
        .store_metadata()
        .unwrap();
    let values = ArrayBuilder::new(vec![11u64], vec![4u64], data_type::float64(), f64::NAN)
        .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(3, false))])
        .attributes(attrs(json!({"scale": 0.5})))
        .build(store.clone(), "/nested/values")
        .unwrap();
    store_metadata(&values);
    let data: Vec<f64> = (0..11).map(|i| i as f64 * 0.5 - 1.0).collect();
    values
        .store_array_subset(&ArraySubset::new_with_shape(vec![11]), data)
        .unwrap();

    // Shards of 4×6 holding inner chunks of 2×3; the last shard row and
    // column are partial.
    let sharded = ArrayBuilder::new(vec![10u64, 14], vec![4u64, 6], data_type::int32(), -1i32)
        .subchunk_shape(vec![2, 3])
        .build(store.clone(), "/nested/sharded")
        .unwrap();
    store_metadata(&sharded);
    let data: Vec<i32> = indices(&[10, 14])
        .iter()
        .map(|i| (i[0] * 14 + i[1]) as i32 - 50)
        .collect();
    sharded
        .store_array_subset(&ArraySubset::new_with_shape(vec![10, 14]), data)
        .unwrap();
}

#[test]
fn zarrs_written_v3_hierarchy() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store.zarr");
    std::fs::create_dir(&root).unwrap();
    write_v3_store(&root);

    let d = ZarrFormat.describe(&root).expect("describe");
    assert_eq!(d.family, StructureFamily::Container);
    assert!(d.parameters.is_none());
    assert_eq!(
        d.metadata,
        attrs(json!({"title": "root group", "count": 3}))
    );
    assert_eq!(keys(&d), ["images", "nested"]);
    let nested = child(&d, "nested");
    assert_eq!(nested.family, StructureFamily::Container);
    assert_eq!(nested.metadata, attrs(json!({"kind": "inner"})));
    assert_eq!(keys(nested), ["sharded", "values"]);

    // The 3-d uint16 array.
    let images = child(&d, "images");
    assert_eq!(images.family, StructureFamily::Array);
    assert_eq!(images.parameters, Some(json!({"path": "/images"})));
    assert_eq!(
        images.metadata,
        attrs(json!({"units": "counts", "nested": {"a": [1, 2]}}))
    );
    let st = structure(images);
    assert_eq!(
        serde_json::to_value(&st.data_type).unwrap(),
        json!({"endianness": "little", "kind": "u", "itemsize": 2, "dt_units": null})
    );
    assert_eq!(st.shape, [7, 10, 9]);
    assert_eq!(st.chunks, vec![vec![3, 3, 1], vec![4, 4, 2], vec![5, 4]]);
    assert_eq!(st.dims, Some(vec!["t".into(), "y".into(), "x".into()]));
    let a = open(&root, images);
    assert_eq!(a.structure(), &st);
    check_formula("images", a.as_ref(), u16::from_le_bytes, u16_at);
    check_array("zarr images", a.as_ref(), usize::MAX);
    for text in ["1:6:2,::-3,4", "-1,2:9,1:8:3", "::2,5,::-1", "3:3", "6,9,8"] {
        let sel = NdSlice::parse(text).unwrap().resolve(&st.shape).unwrap();
        let got = a.read(&sel).unwrap();
        assert_eq!(got.shape, sel.out_shape(), "{text}");
        let want: Vec<u16> = indices(&sel.out_shape())
            .iter()
            .map(|k| {
                // Map output positions back through the selection.
                let mut src = Vec::new();
                let mut kk = k.iter();
                for dsel in &sel.dims {
                    match dsel {
                        tiled_model::DimSelection::Index(i) => src.push(*i),
                        _ => src.push(dsel.source(*kk.next().unwrap())),
                    }
                }
                u16_at(&src)
            })
            .collect();
        assert_eq!(values(&got.bytes, u16::from_le_bytes), want, "{text}");
    }
    for bad in [
        vec![3, 0, 0],
        vec![0, 3, 0],
        vec![0, 0, 2],
        vec![0, 0],
        vec![0, 0, 0, 0],
    ] {
        assert!(
            matches!(a.read_block(&bad), Err(AdapterError::BadRequest(_))),
            "{bad:?}"
        );
    }

    // The 1-d float64 array in the subgroup.
    let vals = child(nested, "values");
    assert_eq!(vals.parameters, Some(json!({"path": "/nested/values"})));
    assert_eq!(vals.metadata, attrs(json!({"scale": 0.5})));
    let st = structure(vals);
    assert_eq!(st.data_type.itemsize(), 8);
    assert_eq!(
        serde_json::to_value(&st.data_type).unwrap()["kind"],
        json!("f")
    );
    assert_eq!(st.chunks, vec![vec![4, 4, 3]]);
    assert_eq!(st.dims, None);
    let a = open(&root, vals);
    check_formula("values", a.as_ref(), f64::from_le_bytes, |i| {
        i[0] as f64 * 0.5 - 1.0
    });
    check_array("zarr values", a.as_ref(), usize::MAX);

    // The sharded array: blocks are the inner chunks.
    let sh = child(nested, "sharded");
    let st = structure(sh);
    assert_eq!(st.shape, [10, 14]);
    assert_eq!(st.chunks, vec![vec![2; 5], vec![3, 3, 3, 3, 2]]);
    let a = open(&root, sh);
    check_formula("sharded", a.as_ref(), i32::from_le_bytes, |i| {
        (i[0] * 14 + i[1]) as i32 - 50
    });
    check_array("zarr sharded", a.as_ref(), usize::MAX);
    assert!(matches!(
        a.read_block(&[5, 0]),
        Err(AdapterError::BadRequest(_))
    ));
}

#[test]
fn store_that_is_an_array() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("arr.zarr");
    std::fs::create_dir(&root).unwrap();
    let store = Arc::new(FilesystemStore::new(&root).unwrap());
    let arr = ArrayBuilder::new(vec![5u64, 3], vec![2u64, 2], data_type::int8(), 0i8)
        .attributes(attrs(json!({"what": "root array"})))
        .build(store.clone(), "/")
        .unwrap();
    arr.store_metadata().unwrap();
    // Leave chunk (2, 1) unwritten: it reads as the fill value.
    let data: Vec<i8> = (0..4).map(|v| v as i8 - 2).collect();
    arr.store_chunk(&[0, 0], data).unwrap();

    let d = ZarrFormat.describe(&root).expect("describe");
    assert_eq!(d.family, StructureFamily::Array);
    assert_eq!(d.parameters, Some(json!({"path": "/"})));
    // Attributes pass through verbatim, including the ones zarrs adds.
    assert_eq!(d.metadata["what"], json!("root array"));
    assert_eq!(d.metadata["_zarrs"]["version"], json!("0.23.14"));
    assert!(d.children.is_empty());
    let st = structure(&d);
    assert_eq!(
        serde_json::to_value(&st.data_type).unwrap(),
        json!({"endianness": "not_applicable", "kind": "i", "itemsize": 1, "dt_units": null})
    );
    assert_eq!(st.chunks, vec![vec![2, 2, 1], vec![2, 1]]);
    let a = open(&root, &d);
    check_formula("root array", a.as_ref(), i8::from_le_bytes, |i| {
        if i[0] < 2 && i[1] < 2 {
            (i[0] * 2 + i[1]) as i8 - 2
        } else {
            0
        }
    });
    check_array("zarr root array", a.as_ref(), usize::MAX);
    // Missing parameters mean the root too.
    assert!(
        ZarrFormat
            .open(&root, &json!({}), StructureFamily::Array)
            .is_ok()
    );
}

#[test]
fn unreadable_stores_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    // Empty directory: no metadata.
    let empty = dir.path().join("empty.zarr");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        ZarrFormat.describe(&empty),
        Err(FileError::Unreadable { .. })
    ));
    // Not a directory at all.
    let file = dir.path().join("file.zarr");
    std::fs::write(&file, b"not zarr").unwrap();
    assert!(matches!(
        ZarrFormat.describe(&file),
        Err(FileError::Unreadable { .. })
    ));
    assert!(
        ZarrFormat
            .describe(&dir.path().join("missing.zarr"))
            .is_err()
    );
    // Garbage metadata.
    let bad = dir.path().join("bad.zarr");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("zarr.json"), b"{not json").unwrap();
    assert!(matches!(
        ZarrFormat.describe(&bad),
        Err(FileError::Unreadable { .. })
    ));
    std::fs::write(
        bad.join("zarr.json"),
        br#"{"zarr_format": 3, "node_type": "array", "shape": [4], "data_type": "uint8"}"#,
    )
    .unwrap();
    assert!(matches!(
        ZarrFormat.describe(&bad),
        Err(FileError::Unreadable { .. })
    ));

    // A corrupted chunk is a read error, and the other chunks still read.
    let root = dir.path().join("corrupt.zarr");
    std::fs::create_dir(&root).unwrap();
    write_v3_store(&root);
    let d = ZarrFormat.describe(&root).unwrap();
    let a = open(&root, child(&d, "images"));
    std::fs::write(root.join("images/c/0/0/0"), b"garbage").unwrap();
    assert!(matches!(
        a.read_block(&[0, 0, 0]),
        Err(AdapterError::Internal(_))
    ));
    assert!(a.read_block(&[1, 0, 0]).is_ok());
    // Sharded: a truncated shard.
    let sh = open(&root, child(child(&d, "nested"), "sharded"));
    std::fs::write(root.join("nested/sharded/c/0/0"), b"xx").unwrap();
    assert!(sh.read_block(&[0, 0]).is_err());
    assert!(sh.read_block(&[4, 4]).is_ok());
    // An array path that is not there.
    assert!(
        ZarrFormat
            .open(&root, &json!({"path": "/nope"}), StructureFamily::Array)
            .is_err()
    );
    // A container has no data of its own.
    assert!(
        ZarrFormat
            .open(&root, &json!({"path": "/"}), StructureFamily::Container)
            .is_err()
    );
}

const PYTHON_WRITER: &str = r#"
import sys
import numpy as np
import zarr
import numcodecs
from zarr.codecs import BloscCodec, ZstdCodec

out = sys.argv[1]

# Zarr v2, blosc-lz4, with a subgroup.
g = zarr.open_group(f"{out}/v2.zarr", mode="w", zarr_format=2)
g.attrs.update({"title": "v2 store", "n": 1})
a = g.create_array(
    "ints", shape=(13, 7), chunks=(5, 3), dtype="int32",
    compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
)
a[:] = np.arange(13 * 7, dtype="int32").reshape(13, 7) * 3 - 40
a.attrs["units"] = "m"
b = g.create_array(
    "big", shape=(6, 5), chunks=(4, 2), dtype=">f8",
    compressors=numcodecs.Blosc(cname="zstd", clevel=3),
)
b[:] = np.arange(30, dtype=">f8").reshape(6, 5) / 4
f = g.create_array(
    "fortran", shape=(5, 4), chunks=(2, 3), dtype="uint16", order="F",
    compressors=numcodecs.Zlib(level=1),
)
f[:] = np.arange(20, dtype="uint16").reshape(5, 4) + 1000
sub = g.create_group("sub")
sub.attrs["deep"] = True
m = sub.create_array("mask", shape=(9,), chunks=(4,), dtype=bool)
m[:] = np.arange(9) % 3 == 0
u = g.create_array("names", shape=(3,), chunks=(2,), dtype="<U3")
u[:] = np.array(["a", "bb", "ccc"])
# Fixed-length byte strings: not supported by zarrs, so skipped.
s = g.create_array("bytes", shape=(3,), chunks=(2,), dtype="S4")
s[:] = np.array([b"a", b"bb", b"cccc"])

# Zarr v3: zstd, a sharded blosc array, missing chunks, complex.
g = zarr.open_group(f"{out}/v3.zarr", mode="w", zarr_format=3)
g.attrs["title"] = "v3 store"
z = g.create_array(
    "floats", shape=(9, 11), chunks=(4, 5), dtype="float64",
    compressors=ZstdCodec(level=3), dimension_names=["row", "col"],
)
z[:] = np.arange(9)[:, None] + np.arange(11)[None, :] / 100
z.attrs["note"] = "zstd"
s = g.create_array(
    "sharded", shape=(20, 30), shards=(10, 15), chunks=(5, 5), dtype="uint16",
    compressors=BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),
)
s[:] = np.arange(600, dtype="uint16").reshape(20, 30)
p = g.create_array("partial", shape=(8, 8), chunks=(4, 4), dtype="int64", fill_value=7)
p[0:4, 0:4] = -np.arange(16).reshape(4, 4)
c = g.create_array("cplx", shape=(5,), chunks=(2,), dtype="complex64")
c[:] = np.arange(5) + 1j * (np.arange(5) * 2)
h = g.create_group("h")
x = h.create_array("x", shape=(3, 4, 5), chunks=(2, 2, 5), dtype="float32")
x[:] = np.arange(60, dtype="float32").reshape(3, 4, 5) * 0.25
w = g.create_array("when", shape=(4,), chunks=(3,), dtype="datetime64[ns]")
w[:] = np.arange(4).astype("timedelta64[s]") + np.datetime64("2020-01-01", "ns")
# Variable-length strings: not supported yet, so skipped.
v = g.create_array("vlen", shape=(3,), chunks=(2,), dtype=str)
v[:] = np.array(["x", "yy", "zzz"], dtype=object)
"#;

#[test]
fn zarr_python_written_stores() {
    let Ok(python) = std::env::var("TILED_TEST_ZARR_PYTHON") else {
        eprintln!("skipping: TILED_TEST_ZARR_PYTHON is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(&python)
        .env("PYTHONWARNINGS", "ignore")
        .arg("-c")
        .arg(PYTHON_WRITER)
        .arg(dir.path())
        .status()
        .expect("run python");
    assert!(status.success(), "the zarr writer failed");

    // ---- v2
    let root = dir.path().join("v2.zarr");
    let d = ZarrFormat.describe(&root).expect("describe v2");
    assert_eq!(d.family, StructureFamily::Container);
    assert_eq!(d.metadata, attrs(json!({"title": "v2 store", "n": 1})));
    assert_eq!(keys(&d), ["big", "fortran", "ints", "names", "sub"]);

    let ints = child(&d, "ints");
    assert_eq!(ints.metadata, attrs(json!({"units": "m"})));
    assert_eq!(ints.parameters, Some(json!({"path": "/ints"})));
    let st = structure(ints);
    assert_eq!(st.chunks, vec![vec![5, 5, 3], vec![3, 3, 1]]);
    let a = open(&root, ints);
    check_formula("v2 ints", a.as_ref(), i32::from_le_bytes, |i| {
        (i[0] * 7 + i[1]) as i32 * 3 - 40
    });
    check_array("v2 ints", a.as_ref(), usize::MAX);

    // Big-endian on disk, declared and served in native (little) order.
    let big = child(&d, "big");
    let st = structure(big);
    assert_eq!(
        serde_json::to_value(&st.data_type).unwrap()["endianness"],
        json!("little")
    );
    let a = open(&root, big);
    check_formula("v2 big-endian", a.as_ref(), f64::from_le_bytes, |i| {
        (i[0] * 5 + i[1]) as f64 / 4.0
    });

    let fortran = child(&d, "fortran");
    let a = open(&root, fortran);
    assert_eq!(a.structure().chunks, vec![vec![2, 2, 1], vec![3, 1]]);
    check_formula("v2 order F", a.as_ref(), u16::from_le_bytes, |i| {
        (i[0] * 4 + i[1]) as u16 + 1000
    });
    check_array("v2 order F", a.as_ref(), usize::MAX);

    let sub = child(&d, "sub");
    assert_eq!(sub.metadata, attrs(json!({"deep": true})));
    let mask = child(sub, "mask");
    assert_eq!(mask.parameters, Some(json!({"path": "/sub/mask"})));
    let st = structure(mask);
    assert_eq!(
        serde_json::to_value(&st.data_type).unwrap(),
        json!({"endianness": "not_applicable", "kind": "b", "itemsize": 1, "dt_units": null})
    );
    let a = open(&root, mask);
    check_formula("v2 bool", a.as_ref(), u8::from_le_bytes, |i| {
        u8::from(i[0] % 3 == 0)
    });

    let names = child(&d, "names");
    let st = structure(names);
    assert_eq!(
        serde_json::to_value(&st.data_type).unwrap(),
        json!({"endianness": "little", "kind": "U", "itemsize": 12, "dt_units": null})
    );
    let a = open(&root, names);
    check_formula(
        "v2 unicode",
        a.as_ref(),
        |b: [u8; 12]| {
            b.chunks(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .filter(|&c| c != 0)
                .filter_map(char::from_u32)
                .collect::<String>()
        },
        |i| ["a", "bb", "ccc"][i[0]].to_string(),
    );

    // ---- v3
    let root = dir.path().join("v3.zarr");
    let d = ZarrFormat.describe(&root).expect("describe v3");
    assert_eq!(d.metadata, attrs(json!({"title": "v3 store"})));
    assert_eq!(
        keys(&d),
        ["cplx", "floats", "h", "partial", "sharded", "when"]
    );

    let floats = child(&d, "floats");
    assert_eq!(floats.metadata, attrs(json!({"note": "zstd"})));
    let st = structure(floats);
    assert_eq!(st.dims, Some(vec!["row".into(), "col".into()]));
    assert_eq!(st.chunks, vec![vec![4, 4, 1], vec![5, 5, 1]]);
    let a = open(&root, floats);
    check_formula("v3 zstd", a.as_ref(), f64::from_le_bytes, |i| {
        i[0] as f64 + i[1] as f64 / 100.0
    });
    check_array("v3 zstd", a.as_ref(), usize::MAX);

    let sharded = child(&d, "sharded");
    let st = structure(sharded);
    assert_eq!(st.chunks, vec![vec![5; 4], vec![5; 6]]);
    let a = open(&root, sharded);
    check_formula("v3 sharded", a.as_ref(), u16::from_le_bytes, |i| {
        (i[0] * 30 + i[1]) as u16
    });
    check_array("v3 sharded", a.as_ref(), usize::MAX);

    let a = open(&root, child(&d, "partial"));
    check_formula("v3 fill value", a.as_ref(), i64::from_le_bytes, |i| {
        if i[0] < 4 && i[1] < 4 {
            -((i[0] * 4 + i[1]) as i64)
        } else {
            7
        }
    });

    let cplx = child(&d, "cplx");
    let st = structure(cplx);
    assert_eq!(
        serde_json::to_value(&st.data_type).unwrap(),
        json!({"endianness": "little", "kind": "c", "itemsize": 8, "dt_units": null})
    );
    let a = open(&root, cplx);
    check_formula(
        "v3 complex",
        a.as_ref(),
        |b: [u8; 8]| {
            (
                f32::from_le_bytes(b[..4].try_into().unwrap()),
                f32::from_le_bytes(b[4..].try_into().unwrap()),
            )
        },
        |i| (i[0] as f32, i[0] as f32 * 2.0),
    );

    let when = child(&d, "when");
    let st = structure(when);
    assert_eq!(
        serde_json::to_value(&st.data_type).unwrap(),
        json!({"endianness": "little", "kind": "M", "itemsize": 8, "dt_units": "[ns]"})
    );
    let a = open(&root, when);
    check_formula("v3 datetime", a.as_ref(), i64::from_le_bytes, |i| {
        1_577_836_800_000_000_000 + i[0] as i64 * 1_000_000_000
    });

    let x = child(child(&d, "h"), "x");
    assert_eq!(x.parameters, Some(json!({"path": "/h/x"})));
    let a = open(&root, x);
    check_formula("v3 nested", a.as_ref(), f32::from_le_bytes, |i| {
        (i[0] * 20 + i[1] * 5 + i[2]) as f32 * 0.25
    });
    check_array("v3 nested", a.as_ref(), usize::MAX);
}

#[test]
fn scalar_empty_and_oversized_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("edge.zarr");
    std::fs::create_dir(&root).unwrap();
    let store = Arc::new(FilesystemStore::new(&root).unwrap());
    GroupBuilder::new()
        .build(store.clone(), "/")
        .unwrap()
        .store_metadata()
        .unwrap();
    let scalar = ArrayBuilder::new(
        Vec::<u64>::new(),
        Vec::<u64>::new(),
        data_type::float32(),
        0f32,
    )
    .build(store.clone(), "/scalar")
    .unwrap();
    store_metadata(&scalar);
    scalar.store_chunk(&[], vec![2.5f32]).unwrap();
    let empty = ArrayBuilder::new(vec![0u64, 5], vec![2u64, 2], data_type::uint32(), 0u32)
        .build(store.clone(), "/empty")
        .unwrap();
    store_metadata(&empty);
    // A grid of 2^40 chunks would make a structure too large to serve.
    std::fs::create_dir(root.join("huge")).unwrap();
    std::fs::write(
        root.join("huge/zarr.json"),
        serde_json::to_vec(&json!({
            "zarr_format": 3, "node_type": "array", "shape": [1u64 << 40],
            "data_type": "uint8",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1]}},
            "chunk_key_encoding": {"name": "default"},
            "fill_value": 0, "codecs": [{"name": "bytes"}]
        }))
        .unwrap(),
    )
    .unwrap();

    let d = ZarrFormat.describe(&root).expect("describe");
    // The oversized array is skipped; the rest of the store is served.
    assert_eq!(keys(&d), ["empty", "scalar"]);

    let s = child(&d, "scalar");
    let st = structure(s);
    assert!(st.shape.is_empty() && st.chunks.is_empty());
    let a = open(&root, s);
    assert_eq!(a.read_block(&[]).unwrap().bytes, 2.5f32.to_le_bytes());
    check_array("zarr scalar", a.as_ref(), usize::MAX);

    let e = child(&d, "empty");
    let st = structure(e);
    assert_eq!(st.shape, [0, 5]);
    assert_eq!(st.chunks, vec![vec![0], vec![2, 2, 1]]);
    let a = open(&root, e);
    let b = a.read_block(&[0, 2]).unwrap();
    assert_eq!((b.shape, b.bytes.len()), (vec![0, 1], 0));
    check_array("zarr empty", a.as_ref(), usize::MAX);

    // As a whole store, the oversized array is unreadable.
    assert!(matches!(
        ZarrFormat.describe(&root.join("huge")),
        Err(FileError::Unreadable { .. })
    ));
}

#[test]
fn walk_registers_a_store_and_reads_through_the_catalog() {
    use tiled_catalog::{Catalog, CatalogContainer};
    use tiled_files::{FileOpener, walk};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("store.zarr")).unwrap();
    write_v3_store(&root.join("store.zarr"));

    let mut catalog = Catalog::temporary().unwrap();
    let formats = tiled_files::formats();
    let real_root = root.canonicalize().unwrap();
    for f in &formats {
        catalog.register_opener(
            f.mimetype(),
            Arc::new(FileOpener::new(f.clone(), vec![real_root.clone()])),
        );
    }
    let catalog = Arc::new(catalog);
    let walker = walk::Walker::new(
        catalog.clone(),
        &formats,
        &root,
        walk::WalkOptions::default(),
    )
    .unwrap();
    let report = walker.register(&[]).unwrap();
    // store, images, nested, nested/sharded, nested/values
    assert_eq!((report.nodes, report.errors), (5, 0), "{report:?}");

    let root_node = CatalogContainer::root_node(catalog.clone()).unwrap();
    let NodeData::Container(top) = &root_node.data else {
        panic!("root is not a container")
    };
    let NodeData::Container(store) = top.get("store").unwrap().unwrap().data else {
        panic!("the store is not a container")
    };
    let NodeData::Array(images) = store.get("images").unwrap().unwrap().data else {
        panic!("images is not an array")
    };
    assert_eq!(images.structure().shape, [7, 10, 9]);
    check_formula("walked images", images.as_ref(), u16::from_le_bytes, u16_at);
    let NodeData::Container(nested) = store.get("nested").unwrap().unwrap().data else {
        panic!("nested is not a container")
    };
    let NodeData::Array(sharded) = nested.get("sharded").unwrap().unwrap().data else {
        panic!("sharded is not an array")
    };
    assert_eq!(
        values(
            &sharded.read_block(&[4, 4]).unwrap().bytes,
            i32::from_le_bytes
        ),
        [
            8 * 14 + 12 - 50,
            8 * 14 + 13 - 50,
            9 * 14 + 12 - 50,
            9 * 14 + 13 - 50
        ]
    );
}
