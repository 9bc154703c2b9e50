//! HDF5 files described and read through `Hdf5Format`, against fixtures
//! written with rust-hdf5's writer (and, when available, with h5py).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rust_hdf5::H5File;
use rust_hdf5::format::messages::datatype::{ByteOrder, CompoundMember, DatatypeMessage};
use rust_hdf5::types::{Complex64, HBool, VarLenUnicode};
use serde_json::{Value, json};
use tiled_adapters::{AdapterError, ArrayAdapter, ArrayData, NodeData, conformance};
use tiled_files::hdf5::Hdf5Format;
use tiled_files::{Described, FileError, FileFormat};
use tiled_model::{ArrayStructure, DataType, NdSlice, StructureFamily};

const CUBE: [usize; 3] = [5, 16, 20];

fn cube_value(i: usize, j: usize, k: usize) -> u16 {
    (i * 1000 + j * 31 + k) as u16
}

fn matrix_value(i: usize, j: usize) -> f64 {
    i as f64 * 9.0 + j as f64 + 0.5
}

fn compound(size: u32, members: &[(&str, u32, DatatypeMessage)]) -> DatatypeMessage {
    DatatypeMessage::compound(
        size,
        members
            .iter()
            .map(|(name, offset, datatype)| CompoundMember {
                name: (*name).to_string(),
                offset: *offset,
                datatype: datatype.clone(),
            })
            .collect(),
    )
}

/// A file with groups, attributes and datasets of many types.
fn write_fixture(path: &Path) {
    let file = H5File::create(path).unwrap();
    file.set_attr_string("title", "fixture").unwrap();
    file.set_attr_numeric("version", &3i64).unwrap();
    file.set_attr_numeric("scale", &0.25f64).unwrap();
    file.set_attr_array_numeric("origin", &[1i32, -2, 3])
        .unwrap();
    file.set_attr_string_array("labels", &["a", "bb"]).unwrap();

    let entry = file.create_group("entry").unwrap();
    entry.set_attr_string("NX_class", "NXentry").unwrap();
    entry.set_attr_numeric("count", &7u32).unwrap();
    let instrument = entry.create_group("instrument").unwrap();
    instrument
        .set_attr_numeric("temperature", &293.5f32)
        .unwrap();
    instrument.create_soft_link("up", "/entry").unwrap();
    let data = entry.create_group("data").unwrap();

    let cube = data
        .new_dataset::<u16>()
        .shape(CUBE)
        .chunk(&[2, 8, 8])
        .deflate(4)
        .create("cube")
        .unwrap();
    let mut values = Vec::new();
    for i in 0..CUBE[0] {
        for j in 0..CUBE[1] {
            for k in 0..CUBE[2] {
                values.push(cube_value(i, j, k));
            }
        }
    }
    cube.write_raw(&values).unwrap();
    cube.new_attr::<VarLenUnicode>()
        .shape(())
        .create("units")
        .unwrap()
        .write_string("counts")
        .unwrap();
    cube.new_attr::<f64>()
        .shape(())
        .create("gain")
        .unwrap()
        .write_numeric(&1.5f64)
        .unwrap();
    cube.new_attr::<i64>()
        .shape([2, 3])
        .create("grid")
        .unwrap()
        .write_array(&[1i64, 2, 3, 4, 5, 6])
        .unwrap();

    let matrix = file
        .new_dataset::<f64>()
        .shape([7, 9])
        .create("matrix")
        .unwrap();
    let m: Vec<f64> = (0..63).map(|n| matrix_value(n / 9, n % 9)).collect();
    matrix.write_raw(&m).unwrap();

    let small = file
        .new_dataset::<i8>()
        .shape([10])
        .create("small")
        .unwrap();
    small.write_raw(&(-5i8..5).collect::<Vec<_>>()).unwrap();

    let be = file
        .new_dataset::<i32>()
        .datatype(DatatypeMessage::FixedPoint {
            size: 4,
            byte_order: ByteOrder::BigEndian,
            signed: true,
            bit_offset: 0,
            bit_precision: 32,
        })
        .shape([4, 3])
        .create("big_endian")
        .unwrap();
    be.write_raw(&(0..12).map(|n| n * 1_000_003 - 7).collect::<Vec<i32>>())
        .unwrap();

    let s4 = DatatypeMessage::FixedString {
        size: 4,
        padding: 1,
        charset: 0,
    };
    let records = file
        .new_dataset::<u8>()
        .datatype(compound(
            16,
            &[
                ("x", 0, DatatypeMessage::f64_type()),
                ("y", 8, DatatypeMessage::i32_type()),
                ("tag", 12, s4),
            ],
        ))
        .shape([6])
        .create("records")
        .unwrap();
    let mut bytes = Vec::new();
    for n in 0..6u8 {
        bytes.extend_from_slice(&(f64::from(n) * 1.5).to_le_bytes());
        bytes.extend_from_slice(&(i32::from(n) - 3).to_le_bytes());
        bytes.extend_from_slice(&[b't', b'0' + n, 0, 0]);
    }
    records.write_raw_bytes(&bytes).unwrap();

    let padded = file
        .new_dataset::<u8>()
        .datatype(compound(
            16,
            &[
                ("a", 0, DatatypeMessage::u8_type()),
                ("b", 8, DatatypeMessage::f64_type()),
            ],
        ))
        .shape([3])
        .create("padded")
        .unwrap();
    let mut bytes = Vec::new();
    for n in 0..3u8 {
        bytes.push(n + 10);
        bytes.extend_from_slice(&[0xEE; 7]);
        bytes.extend_from_slice(&(f64::from(n) + 0.125).to_le_bytes());
    }
    padded.write_raw_bytes(&bytes).unwrap();

    file.new_dataset::<HBool>()
        .shape([5])
        .create("flags")
        .unwrap()
        .write_raw(&[true, false, true, true, false].map(HBool::from))
        .unwrap();
    file.new_dataset::<Complex64>()
        .shape([2])
        .create("complex")
        .unwrap()
        .write_raw(&[
            Complex64 { re: 1.0, im: -1.0 },
            Complex64 { re: 0.5, im: 2.0 },
        ])
        .unwrap();
    file.new_dataset::<u16>()
        .datatype(DatatypeMessage::f16_type())
        .shape([3])
        .create("half")
        .unwrap()
        .write_raw(&[0x3c00u16, 0xc000, 0x3800])
        .unwrap();
    file.new_dataset::<f64>()
        .scalar()
        .create("scalar")
        .unwrap()
        .write_raw(&[3.25f64])
        .unwrap();

    file.create_soft_link("alias", "/matrix").unwrap();
    file.create_soft_link("instrument_alias", "/entry/instrument")
        .unwrap();
    file.create_external_link("ext", "elsewhere.h5", "/data")
        .unwrap();
    file.close().unwrap();
}

fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.h5");
    write_fixture(&path);
    (dir, path)
}

fn child<'a>(node: &'a Described, key: &str) -> &'a Described {
    node.children
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("no child {key:?}"))
}

fn keys(node: &Described) -> Vec<&str> {
    node.children.iter().map(|(k, _)| k.as_str()).collect()
}

fn structure(node: &Described) -> ArrayStructure {
    serde_json::from_value(node.structure.clone().expect("an array")).unwrap()
}

fn open(path: &Path, node: &Described) -> Arc<dyn ArrayAdapter> {
    assert_eq!(node.family, StructureFamily::Array);
    let params = node.parameters.as_ref().expect("parameters");
    match Hdf5Format
        .open(path, params, StructureFamily::Array)
        .unwrap()
    {
        NodeData::Array(a) => a,
        _ => panic!("not an array"),
    }
}

fn dtype(s: &str) -> DataType {
    DataType::from_numpy_str(s).unwrap()
}

fn u16s(a: &ArrayData) -> Vec<u16> {
    a.bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn f64s(a: &ArrayData) -> Vec<f64> {
    a.bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn describes_the_tree() {
    let (_dir, path) = fixture();
    let root = Hdf5Format.describe(&path).unwrap();
    assert_eq!(root.family, StructureFamily::Container);
    assert_eq!(
        keys(&root),
        vec![
            "alias",
            "big_endian",
            "complex",
            "entry",
            "flags",
            "half",
            "instrument_alias",
            "matrix",
            "padded",
            "records",
            "scalar",
            "small",
        ],
        "external links are skipped"
    );
    assert_eq!(
        Value::Object(root.metadata.clone()),
        json!({
            "labels": ["a", "bb"],
            "origin": [1, -2, 3],
            "scale": 0.25,
            "title": "fixture",
            "version": 3,
        })
    );

    let entry = child(&root, "entry");
    assert_eq!(entry.family, StructureFamily::Container);
    assert!(entry.parameters.is_none());
    assert_eq!(
        Value::Object(entry.metadata.clone()),
        json!({"NX_class": "NXentry", "count": 7}),
        "a group's own attributes only"
    );
    assert_eq!(keys(entry), vec!["data", "instrument"]);
    let instrument = child(entry, "instrument");
    assert_eq!(
        Value::Object(instrument.metadata.clone()),
        json!({"temperature": 293.5})
    );
    assert!(
        instrument.children.is_empty(),
        "the soft link back to /entry is skipped"
    );
    let alias = child(&root, "instrument_alias");
    assert_eq!(alias.family, StructureFamily::Container);
    assert_eq!(alias.metadata, instrument.metadata);

    let cube = child(child(entry, "data"), "cube");
    assert_eq!(
        cube.parameters,
        Some(json!({"dataset": "/entry/data/cube"}))
    );
    assert_eq!(
        Value::Object(cube.metadata.clone()),
        json!({"gain": 1.5, "grid": [[1, 2, 3], [4, 5, 6]], "units": "counts"})
    );
    let st = structure(cube);
    assert_eq!(st.shape, CUBE.to_vec());
    assert_eq!(st.data_type, dtype("<u2"));
    assert_eq!(
        st.chunks,
        vec![vec![2, 2, 1], vec![8, 8], vec![8, 8, 4]],
        "blocks are the file's chunks"
    );
    assert!(!st.resizable);
    assert_eq!(cube.structure.as_ref().unwrap()["dims"], Value::Null);

    let matrix = structure(child(&root, "matrix"));
    assert_eq!(matrix.data_type, dtype("<f8"));
    assert_eq!(matrix.chunks, vec![vec![7], vec![9]]);
    assert_eq!(structure(child(&root, "small")).data_type, dtype("|i1"));
    assert_eq!(
        structure(child(&root, "big_endian")).data_type,
        dtype(">i4")
    );
    assert_eq!(structure(child(&root, "flags")).data_type, dtype("|b1"));
    assert_eq!(structure(child(&root, "complex")).data_type, dtype("<c16"));
    assert_eq!(structure(child(&root, "half")).data_type, dtype("<f2"));
    let scalar = structure(child(&root, "scalar"));
    assert!(scalar.shape.is_empty() && scalar.chunks.is_empty());
    assert_eq!(
        child(&root, "alias").parameters,
        Some(json!({"dataset": "/alias"}))
    );

    let records = structure(child(&root, "records"));
    assert_eq!(
        serde_json::to_value(&records.data_type).unwrap(),
        json!({
            "itemsize": 16,
            "fields": [
                {"name": "x", "dtype": {"endianness": "little", "kind": "f", "itemsize": 8, "dt_units": null}, "shape": null},
                {"name": "y", "dtype": {"endianness": "little", "kind": "i", "itemsize": 4, "dt_units": null}, "shape": null},
                {"name": "tag", "dtype": {"endianness": "not_applicable", "kind": "S", "itemsize": 4, "dt_units": null}, "shape": null},
            ]
        })
    );
    assert_eq!(structure(child(&root, "padded")).data_type.itemsize(), 9);
}

#[test]
fn chunked_blocks_are_the_files_chunks() {
    let (_dir, path) = fixture();
    let root = Hdf5Format.describe(&path).unwrap();
    let cube = open(&path, child(child(child(&root, "entry"), "data"), "cube"));
    let st = cube.structure().clone();
    assert!(!cube.cheap_region_reads());
    for b0 in 0..3 {
        for b1 in 0..2 {
            for b2 in 0..3 {
                let block = [b0, b1, b2];
                let (offset, shape) = st.block_extent(&block).unwrap();
                let got = cube.read_block(&block).unwrap();
                assert_eq!(got.shape, shape);
                assert_eq!(got.dtype, dtype("<u2"));
                let mut want = Vec::new();
                for i in 0..shape[0] {
                    for j in 0..shape[1] {
                        for k in 0..shape[2] {
                            want.push(cube_value(offset[0] + i, offset[1] + j, offset[2] + k));
                        }
                    }
                }
                assert_eq!(u16s(&got), want, "block {block:?}");
            }
        }
    }
    for bad in [vec![3, 0, 0], vec![0, 2, 0], vec![0, 0], vec![0, 0, 0, 0]] {
        assert!(
            matches!(cube.read_block(&bad), Err(AdapterError::BadRequest(_))),
            "{bad:?}"
        );
    }
    conformance::check_array("cube", cube.as_ref(), usize::MAX);
}

#[test]
fn slices_equal_slicing_the_full_array() {
    let (_dir, path) = fixture();
    let root = Hdf5Format.describe(&path).unwrap();
    let cube = open(&path, child(child(child(&root, "entry"), "data"), "cube"));
    let full = cube
        .read(&NdSlice::default().resolve(&CUBE).unwrap())
        .unwrap();
    assert_eq!(full.shape, CUBE.to_vec());
    let want_full: Vec<u16> = (0..CUBE[0])
        .flat_map(|i| {
            (0..CUBE[1]).flat_map(move |j| (0..CUBE[2]).map(move |k| cube_value(i, j, k)))
        })
        .collect();
    assert_eq!(u16s(&full), want_full);
    for text in [
        "1:4,3:13,5:19",
        "2,::3,-1",
        "::-1,7,2:18:5",
        "4,15,19",
        "0:5,8:9,:",
        "1:1",
        "-2:,::-2,::7",
    ] {
        let sel = NdSlice::parse(text).unwrap().resolve(&CUBE).unwrap();
        let got = cube.read(&sel).unwrap();
        assert_eq!(got.shape, sel.out_shape(), "{text}");
        assert_eq!(got.bytes, full.select(&sel).bytes, "{text}");
    }
}

#[test]
fn typed_datasets_read_back() {
    let (_dir, path) = fixture();
    let root = Hdf5Format.describe(&path).unwrap();

    let matrix = open(&path, child(&root, "matrix"));
    assert!(matrix.cheap_region_reads());
    let sel = NdSlice::parse("2:5,::4").unwrap().resolve(&[7, 9]).unwrap();
    let got = matrix.read(&sel).unwrap();
    let want: Vec<f64> = (2..5)
        .flat_map(|i| [0, 4, 8].map(|j| matrix_value(i, j)))
        .collect();
    assert_eq!(f64s(&got), want);
    conformance::check_array("matrix", matrix.as_ref(), usize::MAX);

    let alias = open(&path, child(&root, "alias"));
    assert_eq!(
        alias.read_block(&[0, 0]).unwrap(),
        matrix.read_block(&[0, 0]).unwrap()
    );

    let small = open(&path, child(&root, "small"));
    let got = small.read_block(&[0]).unwrap();
    assert_eq!(got.bytes, (-5i8..5).map(|v| v as u8).collect::<Vec<_>>());

    let be = open(&path, child(&root, "big_endian"));
    let got = be
        .read(&NdSlice::default().resolve(&[4, 3]).unwrap())
        .unwrap();
    assert_eq!(got.dtype, dtype(">i4"));
    let values: Vec<i32> = got
        .bytes
        .chunks_exact(4)
        .map(|c| i32::from_be_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        values,
        (0..12).map(|n| n * 1_000_003 - 7).collect::<Vec<_>>()
    );
    conformance::check_array("big_endian", be.as_ref(), usize::MAX);

    let records = open(&path, child(&root, "records"));
    let got = records
        .read(&NdSlice::parse("1:6:2").unwrap().resolve(&[6]).unwrap())
        .unwrap();
    assert_eq!(got.shape, vec![3]);
    for (n, rec) in [1u8, 3, 5].iter().zip(got.bytes.chunks_exact(16)) {
        assert_eq!(
            f64::from_le_bytes(rec[..8].try_into().unwrap()),
            f64::from(*n) * 1.5
        );
        assert_eq!(
            i32::from_le_bytes(rec[8..12].try_into().unwrap()),
            i32::from(*n) - 3
        );
        assert_eq!(&rec[12..14], &[b't', b'0' + n]);
    }
    conformance::check_array("records", records.as_ref(), usize::MAX);

    let padded = open(&path, child(&root, "padded"));
    let got = padded.read_block(&[0]).unwrap();
    assert_eq!(got.bytes.len(), 27);
    for (n, rec) in got.bytes.chunks_exact(9).enumerate() {
        assert_eq!(rec[0], n as u8 + 10);
        assert_eq!(
            f64::from_le_bytes(rec[1..].try_into().unwrap()),
            n as f64 + 0.125
        );
    }
    conformance::check_array("padded", padded.as_ref(), usize::MAX);

    let flags = open(&path, child(&root, "flags"));
    assert_eq!(flags.read_block(&[0]).unwrap().bytes, vec![1, 0, 1, 1, 0]);

    let complex = open(&path, child(&root, "complex"));
    assert_eq!(
        f64s(&complex.read_block(&[0]).unwrap()),
        vec![1.0, -1.0, 0.5, 2.0]
    );

    let half = open(&path, child(&root, "half"));
    assert_eq!(
        u16s(&half.read_block(&[0]).unwrap()),
        vec![0x3c00, 0xc000, 0x3800]
    );

    let scalar = open(&path, child(&root, "scalar"));
    assert_eq!(f64s(&scalar.read_block(&[]).unwrap()), vec![3.25]);
    assert_eq!(
        f64s(
            &scalar
                .read(&NdSlice::default().resolve(&[]).unwrap())
                .unwrap()
        ),
        vec![3.25]
    );
    conformance::check_array("scalar", scalar.as_ref(), usize::MAX);
}

#[test]
fn damaged_files_are_errors() {
    let (dir, path) = fixture();
    let garbage = dir.path().join("garbage.h5");
    std::fs::write(
        &garbage,
        b"this is not an HDF5 file, just some text\n".repeat(100),
    )
    .unwrap();
    let empty = dir.path().join("empty.h5");
    std::fs::write(&empty, b"").unwrap();
    let whole = std::fs::read(&path).unwrap();
    // Cut before the metadata ends: never a description.
    let mut unreadable = vec![garbage, empty];
    for keep in [8, 100, 1000] {
        let truncated = dir.path().join(format!("truncated-{keep}.h5"));
        std::fs::write(&truncated, &whole[..keep]).unwrap();
        unreadable.push(truncated);
    }
    for p in &unreadable {
        assert!(
            matches!(Hdf5Format.describe(p), Err(FileError::Unreadable { .. })),
            "{}",
            p.display()
        );
        assert!(
            Hdf5Format
                .open(p, &json!({"dataset": "/matrix"}), StructureFamily::Array)
                .is_err(),
            "{}",
            p.display()
        );
    }
    // Cut anywhere else: an error or a description, never a panic, and
    // reading what is gone fails cleanly.
    for keep in [whole.len() / 4, whole.len() / 2, whole.len() - 16] {
        let truncated = dir.path().join(format!("cut-{keep}.h5"));
        std::fs::write(&truncated, &whole[..keep]).unwrap();
        let Ok(root) = Hdf5Format.describe(&truncated) else {
            continue;
        };
        let mut stack = vec![&root];
        while let Some(node) = stack.pop() {
            stack.extend(node.children.iter().map(|(_, c)| c));
            if let Some(params) = &node.parameters
                && let Ok(NodeData::Array(a)) =
                    Hdf5Format.open(&truncated, params, StructureFamily::Array)
            {
                let _ = a.read(&NdSlice::default().resolve(&a.structure().shape).unwrap());
            }
        }
    }
    assert!(matches!(
        Hdf5Format.describe(&dir.path().join("missing.h5")),
        Err(FileError::Unreadable { .. } | FileError::Io { .. })
    ));
    assert!(
        Hdf5Format
            .open(&path, &json!({"dataset": "/nope"}), StructureFamily::Array)
            .is_err()
    );
    assert!(
        Hdf5Format
            .open(&path, &json!({}), StructureFamily::Array)
            .is_err()
    );
}

const H5PY_SCRIPT: &str = r#"
import sys
import h5py
import numpy as np

with h5py.File(sys.argv[1], "w") as f:
    f.attrs["title"] = "made by h5py"
    f.attrs["answer"] = np.int32(42)
    x = np.arange(4 * 64 * 64, dtype="uint16").reshape(4, 64, 64)
    f.create_dataset("images", data=x, chunks=(1, 64, 64), compression="gzip")
    g = f.create_group("sample")
    g.attrs["name"] = "quartz"
    g.attrs["position"] = np.array([1.5, -2.0, 3.25])
    g.attrs["count"] = 17
    g.attrs["matrix"] = np.arange(6, dtype="int16").reshape(2, 3)
    g.attrs["names"] = ["x", "yy"]
    g.attrs["flag"] = True
    g.attrs["fixed"] = np.bytes_(b"abc")
    g.create_dataset("mask", data=np.arange(10) % 3 == 0)
    g.create_dataset("codes", data=np.array([b"alpha", b"be", b"gamma"], dtype="S5"))
    rec = np.zeros(5, dtype=[("id", "<i4"), ("value", ">f8"), ("code", "S3")])
    rec["id"] = np.arange(5)
    rec["value"] = np.arange(5) * 0.5
    rec["code"] = [b"a", b"bb", b"ccc", b"d", b"e"]
    g.create_dataset("records", data=rec)
    y = (np.arange(100 * 30, dtype="float32").reshape(100, 30) / 4).astype("float32")
    f.create_dataset("lzf", data=y, chunks=(16, 30), compression="lzf")
    f.create_dataset("big", data=np.arange(12, dtype=">i8").reshape(3, 4))
    f["link"] = h5py.SoftLink("/sample")
"#;

#[test]
fn reads_files_h5py_writes() {
    let Some(home) = std::env::var_os("HOME") else {
        eprintln!("skipping: no HOME");
        return;
    };
    let python = Path::new(&home).join(".cache/tiled-rs/venv/bin/python");
    let has_h5py = std::process::Command::new(&python)
        .args(["-c", "import h5py"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_h5py {
        eprintln!("skipping: no h5py at {}", python.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h5py.h5");
    let out = std::process::Command::new(&python)
        .args(["-c", H5PY_SCRIPT])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let root = Hdf5Format.describe(&path).unwrap();
    assert_eq!(keys(&root), vec!["big", "images", "link", "lzf", "sample"]);
    assert_eq!(
        Value::Object(root.metadata.clone()),
        json!({"answer": 42, "title": "made by h5py"})
    );
    let sample = child(&root, "sample");
    assert_eq!(
        Value::Object(sample.metadata.clone()),
        json!({
            "count": 17,
            "fixed": "abc",
            "flag": true,
            "matrix": [[0, 1, 2], [3, 4, 5]],
            "name": "quartz",
            "names": ["x", "yy"],
            "position": [1.5, -2.0, 3.25],
        })
    );
    assert_eq!(keys(sample), vec!["codes", "mask", "records"]);
    assert_eq!(keys(child(&root, "link")), keys(sample));

    // gzip, one chunk per image.
    let images = open(&path, child(&root, "images"));
    let st = images.structure().clone();
    assert_eq!(st.data_type, dtype("<u2"));
    assert_eq!(st.chunks, vec![vec![1; 4], vec![64], vec![64]]);
    for i in 0..4 {
        let got = images.read_block(&[i, 0, 0]).unwrap();
        let want: Vec<u16> = (0..64 * 64).map(|n| (i * 64 * 64 + n) as u16).collect();
        assert_eq!(u16s(&got), want, "image {i}");
    }
    let sel = NdSlice::parse("1:3,10:20:3,-5:")
        .unwrap()
        .resolve(&st.shape)
        .unwrap();
    let got = images.read(&sel).unwrap();
    let want: Vec<u16> = (1..3)
        .flat_map(|i| {
            [10, 13, 16, 19]
                .into_iter()
                .flat_map(move |j| (59..64).map(move |k| (i * 4096 + j * 64 + k) as u16))
        })
        .collect();
    assert_eq!(u16s(&got), want);
    conformance::check_array("h5py images", images.as_ref(), 0);

    // lzf float32.
    let lzf = open(&path, child(&root, "lzf"));
    assert_eq!(lzf.structure().data_type, dtype("<f4"));
    assert_eq!(lzf.structure().chunks[0], vec![16, 16, 16, 16, 16, 16, 4]);
    let got = lzf
        .read(&NdSlice::default().resolve(&[100, 30]).unwrap())
        .unwrap();
    let values: Vec<f32> = got
        .bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        values,
        (0..3000).map(|n| n as f32 / 4.0).collect::<Vec<_>>()
    );
    conformance::check_array("h5py lzf", lzf.as_ref(), usize::MAX);

    // Big-endian int64, as stored.
    let big = open(&path, child(&root, "big"));
    assert_eq!(big.structure().data_type, dtype(">i8"));
    let got = big.read_block(&[0, 0]).unwrap();
    let values: Vec<i64> = got
        .bytes
        .chunks_exact(8)
        .map(|c| i64::from_be_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values, (0..12).collect::<Vec<_>>());

    // bool (an int8 enum in the file).
    let mask = open(&path, child(sample, "mask"));
    assert_eq!(mask.structure().data_type, dtype("|b1"));
    assert_eq!(
        mask.read_block(&[0]).unwrap().bytes,
        (0..10).map(|n| u8::from(n % 3 == 0)).collect::<Vec<_>>()
    );

    // S5.
    let codes = open(&path, child(sample, "codes"));
    assert_eq!(codes.structure().data_type, dtype("|S5"));
    assert_eq!(
        codes.read_block(&[0]).unwrap().bytes,
        b"alphabe\0\0\0gamma".to_vec()
    );

    // Compound with a big-endian member.
    let records = open(&path, child(sample, "records"));
    assert_eq!(
        serde_json::to_value(&records.structure().data_type).unwrap()["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (
                f["name"].clone(),
                f["dtype"]["endianness"].clone(),
                f["dtype"]["kind"].clone()
            ))
            .collect::<Vec<_>>(),
        vec![
            (json!("id"), json!("little"), json!("i")),
            (json!("value"), json!("big"), json!("f")),
            (json!("code"), json!("not_applicable"), json!("S")),
        ]
    );
    let got = records.read_block(&[0]).unwrap();
    assert_eq!(got.dtype.itemsize(), 15);
    let codes = [&b"a\0\0"[..], b"bb\0", b"ccc", b"d\0\0", b"e\0\0"];
    for (n, rec) in got.bytes.chunks_exact(15).enumerate() {
        assert_eq!(i32::from_le_bytes(rec[..4].try_into().unwrap()), n as i32);
        assert_eq!(
            f64::from_be_bytes(rec[4..12].try_into().unwrap()),
            n as f64 * 0.5
        );
        assert_eq!(&rec[12..], codes[n]);
    }
}
