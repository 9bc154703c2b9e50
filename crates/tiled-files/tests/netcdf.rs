//! NetCDF files described and read through `NetcdfFormat`, against fixtures
//! written by netCDF4-python (the python named by `TILED_TEST_NETCDF_PYTHON`;
//! the tests that need it are skipped without it).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tiled_adapters::{AdapterError, ArrayAdapter, ArrayData, NodeData, conformance};
use tiled_files::netcdf::NetcdfFormat;
use tiled_files::{Described, FileFormat};
use tiled_model::{
    ArrayStructure, DataType, DimSelection, NdSlice, ResolvedSlice, StructureFamily,
};

/// The fixture writer. `argv[1]` is the kind, `argv[2]` the output path.
const WRITER: &str = r#"
import sys
import numpy as np
import netCDF4

kind, path = sys.argv[1], sys.argv[2]

def temperature(t, i, j):
    return t * 100.0 + i * 10.0 + j + 0.5

if kind == "nc4":
    ds = netCDF4.Dataset(path, "w", format="NETCDF4")
    ds.title = "netcdf fixture"
    ds.version = 3
    ds.setncattr("scale", 0.25)
    ds.origin = np.array([1, -2, 3], dtype="i4")
    ds.createDimension("time", 5)
    ds.createDimension("x", 4)
    ds.createDimension("y", 3)
    ds.createDimension("rec", None)
    ds.createDimension("n", 50000)
    ds.createDimension("strlen", 6)

    t = ds.createVariable("time", "f8", ("time",))
    t.units = "seconds since 2000-01-01"
    t[:] = np.arange(5) * 0.5
    x = ds.createVariable("x", "f4", ("x",))
    x.units = "m"
    x[:] = np.arange(4) * 1.5
    y = ds.createVariable("y", "i4", ("y",))
    y.units = "mm"
    y[:] = [10, 20, 30]

    temp = ds.createVariable(
        "temperature", "f8", ("time", "x", "y"),
        chunksizes=(1, 4, 3), zlib=True, fill_value=-999.0,
    )
    temp.units = "K"
    temp.long_name = "air temperature"
    temp.valid_range = np.array([0.0, 1000.0])
    temp.setncattr("scale", np.float32(0.1))
    temp.coordinates = "lat"
    tt, ii, jj = np.meshgrid(np.arange(5), np.arange(4), np.arange(3), indexing="ij")
    temp[:] = temperature(tt, ii, jj)

    counts = ds.createVariable("counts", "i4", ("x",))
    counts.long_name = "counts per x"
    counts[:] = [7, -8, 9, -10]

    lat = ds.createVariable("lat", "f4", ("x",))
    lat[:] = np.arange(4) * 2.0 + 40.0

    big = ds.createVariable("big_endian", "i2", ("time", "x"), endian="big")
    big[:] = np.arange(20).reshape(5, 4) - 7

    u = ds.createVariable("unsigned", "u2", ("x", "y"), contiguous=True)
    u[:] = np.arange(12).reshape(4, 3) * 1000

    r = ds.createVariable("records", "i8", ("rec", "x"))
    r[0:7, :] = np.arange(28).reshape(7, 4) * 3

    many = ds.createVariable("many", "u1", ("n",), chunksizes=(2,))
    many[:] = np.arange(50000) % 251

    s = ds.createVariable("answer", "i8", ())
    s[...] = 42
    s.nan = np.nan

    c = ds.createVariable("label", "S1", ("x", "strlen"))
    c[:] = netCDF4.stringtochar(np.array(["a", "bb", "ccc", "dddd"], dtype="S6"))
    v = ds.createVariable("names", str, ("x",))
    v[:] = np.array(["p", "q", "r", "s"], dtype=object)

    g = ds.createGroup("sub")
    g.createVariable("hidden", "f8", ("x",))[:] = 1.0
    ds.close()
else:
    fmt = {"classic": "NETCDF3_CLASSIC", "offset64": "NETCDF3_64BIT_OFFSET"}[kind]
    ds = netCDF4.Dataset(path, "w", format=fmt)
    ds.title = "classic fixture"
    ds.answer = 42
    ds.ratio = np.float32(0.1)
    ds.createDimension("time", None)
    ds.createDimension("x", 4)
    ds.createDimension("strlen", 3)
    t = ds.createVariable("time", "f8", ("time",))
    t.units = "days"
    x = ds.createVariable("x", "f4", ("x",))
    x.units = "m"
    x[:] = np.arange(4) * 1.5
    temp = ds.createVariable("temperature", "f4", ("time", "x"))
    temp.units = "K"
    temp.scale_factor = 0.5
    flags = ds.createVariable("flags", "i1", ("time",))
    counts = ds.createVariable("counts", "i2", ("x",))
    counts[:] = [1, -2, 3, -4]
    label = ds.createVariable("label", "S1", ("x", "strlen"))
    for k in range(6):
        t[k] = k * 2.0
        temp[k, :] = temperature(k, np.arange(4), 0)
        flags[k] = k - 3
    ds.close()
"#;

/// The python to write fixtures with, if the environment names one that has
/// netCDF4.
fn python() -> Option<PathBuf> {
    let Some(p) = std::env::var_os("TILED_TEST_NETCDF_PYTHON") else {
        eprintln!("skipping: TILED_TEST_NETCDF_PYTHON is not set");
        return None;
    };
    let ok = Command::new(&p)
        .args(["-c", "import netCDF4, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping: {p:?} cannot import netCDF4");
        return None;
    }
    Some(PathBuf::from(p))
}

fn write(python: &Path, kind: &str, path: &Path) {
    let out = Command::new(python)
        .args(["-c", WRITER, kind])
        .arg(path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "fixture writer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

trait Numpy {
    fn numpy(&self) -> String;
}

impl Numpy for DataType {
    fn numpy(&self) -> String {
        match self {
            DataType::Builtin(b) => b.to_numpy_str(),
            DataType::Struct(_) => "struct".into(),
        }
    }
}

fn temperature(t: usize, i: usize, j: usize) -> f64 {
    t as f64 * 100.0 + i as f64 * 10.0 + j as f64 + 0.5
}

/// Decode little-endian values of any numeric dtype as f64.
fn values(data: &ArrayData) -> Vec<f64> {
    let s = data.dtype.itemsize();
    let kind = data.dtype.numpy();
    data.bytes
        .chunks_exact(s)
        .map(|b| match kind.trim_start_matches(['<', '|', '=']) {
            "i1" => b[0] as i8 as f64,
            "u1" => b[0] as f64,
            "i2" => i16::from_le_bytes([b[0], b[1]]) as f64,
            "u2" => u16::from_le_bytes([b[0], b[1]]) as f64,
            "i4" => i32::from_le_bytes(b.try_into().unwrap()) as f64,
            "u4" => u32::from_le_bytes(b.try_into().unwrap()) as f64,
            "i8" => i64::from_le_bytes(b.try_into().unwrap()) as f64,
            "u8" => u64::from_le_bytes(b.try_into().unwrap()) as f64,
            "f4" => f32::from_le_bytes(b.try_into().unwrap()) as f64,
            "f8" => f64::from_le_bytes(b.try_into().unwrap()),
            other => panic!("unexpected dtype {other}"),
        })
        .collect()
}

/// The values a selection should hold, by formula over source positions.
fn expected(sel: &ResolvedSlice, f: &dyn Fn(&[usize]) -> f64) -> Vec<f64> {
    let counts: Vec<usize> = sel.dims.iter().map(DimSelection::count).collect();
    let total: usize = counts.iter().product();
    let mut out = Vec::with_capacity(total);
    for mut k in 0..total {
        let mut idx = vec![0; counts.len()];
        for d in (0..counts.len()).rev() {
            idx[d] = sel.dims[d].source(k % counts[d]);
            k /= counts[d];
        }
        out.push(f(&idx));
    }
    out
}

fn region(offset: &[usize], shape: &[usize]) -> ResolvedSlice {
    ResolvedSlice {
        dims: offset
            .iter()
            .zip(shape)
            .map(|(&o, &n)| DimSelection::Range {
                start: o as i64,
                step: 1,
                len: n,
            })
            .collect(),
    }
}

fn child<'a>(d: &'a Described, key: &str) -> &'a Described {
    &d.children
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no child {key}"))
        .1
}

fn structure(d: &Described) -> ArrayStructure {
    serde_json::from_value(d.structure.clone().expect("structure")).expect("array structure")
}

fn open(path: &Path, d: &Described) -> std::sync::Arc<dyn ArrayAdapter> {
    let parameters = d.parameters.clone().expect("parameters");
    match NetcdfFormat
        .open(path, &parameters, StructureFamily::Array)
        .expect("open")
    {
        NodeData::Array(a) => a,
        _ => panic!("not an array"),
    }
}

/// Every block and a few slices of a variable against its formula, plus the
/// shared adapter conformance checks.
fn check_values(path: &Path, d: &Described, name: &str, f: &dyn Fn(&[usize]) -> f64) {
    let a = open(path, d);
    let st = a.structure().clone();
    assert_eq!(st, structure(d), "{name}: open() agrees with describe()");
    let grid = st.block_grid();
    let nblocks: usize = grid.iter().product();
    // Every block of small grids; the first, last and a spread of others
    // of large ones (each block read walks the file's chunk index).
    let picks: Vec<usize> = if nblocks <= 64 {
        (0..nblocks).collect()
    } else {
        (0..16)
            .chain(nblocks - 16..nblocks)
            .chain((1..32).map(|k| k * nblocks / 32))
            .collect()
    };
    for mut k in picks {
        let mut block = vec![0; grid.len()];
        for axis in (0..grid.len()).rev() {
            block[axis] = k % grid[axis];
            k /= grid[axis];
        }
        let (offset, shape) = st.block_extent(&block).unwrap();
        let got = a.read_block(&block).unwrap();
        assert_eq!(got.shape, shape, "{name}: block {block:?}");
        assert_eq!(
            values(&got),
            expected(&region(&offset, &shape), f),
            "{name}: block {block:?}"
        );
    }
    let full = a.read(&ResolvedSlice::full(&st.shape)).unwrap();
    assert_eq!(
        values(&full),
        expected(&ResolvedSlice::full(&st.shape), f),
        "{name}: full read"
    );
    let slices: &[&str] = match st.shape.len() {
        0 => &[""],
        1 => &["1:3", "::2", "-1", "::-1", "-2::-3", "2:2"],
        2 => &["1:3,1:", "::2,-1", "-1,::-2", "2,1", "::-1,::-1", "1:1,:"],
        _ => &[
            "1:3,1:,::2",
            "2,:,1",
            "::-2,1:3,2",
            "-1,-1,-1",
            "::3,::-1,::2",
        ],
    };
    for text in slices {
        let sel = NdSlice::parse(text)
            .unwrap()
            .resolve(&st.shape)
            .unwrap_or_else(|e| panic!("{name}: {text}: {e}"));
        let got = a.read(&sel).unwrap();
        assert_eq!(got.shape, sel.out_shape(), "{name}: slice {text}");
        assert_eq!(values(&got), expected(&sel, f), "{name}: slice {text}");
    }
    conformance::check_array(name, a.as_ref(), 1000);
}

#[test]
fn netcdf4_file_is_an_xarray_dataset() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.nc");
    write(&py, "nc4", &path);
    let d = NetcdfFormat.describe(&path).expect("describe");

    assert_eq!(d.family, StructureFamily::Container);
    assert_eq!(d.structure, None);
    assert_eq!(d.parameters, None);
    assert_eq!(
        serde_json::to_value(&d.specs).unwrap(),
        json!([{"name": "xarray_dataset", "version": null}])
    );
    assert_eq!(
        Value::Object(d.metadata.clone()),
        json!({"attrs": {
            "title": "netcdf fixture",
            "version": 3,
            "scale": 0.25,
            "origin": [1, -2, 3],
        }})
    );
    // Character and string variables are skipped, and so is the subgroup.
    let keys: Vec<&str> = d.children.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "time",
            "x",
            "y",
            "temperature",
            "counts",
            "lat",
            "big_endian",
            "unsigned",
            "records",
            "many",
            "answer"
        ]
    );

    let spec = |key: &str| child(&d, key).specs[0].name.clone();
    for key in ["time", "x", "y", "lat"] {
        assert_eq!(spec(key), "xarray_coord", "{key}");
    }
    for key in ["temperature", "counts", "big_endian", "records", "answer"] {
        assert_eq!(spec(key), "xarray_data_var", "{key}");
    }
    for (_, c) in &d.children {
        assert_eq!(c.family, StructureFamily::Array);
        assert_eq!(c.specs.len(), 1);
    }

    let temp = child(&d, "temperature");
    assert_eq!(
        Value::Object(temp.metadata.clone()),
        json!({"attrs": {
            "units": "K",
            "long_name": "air temperature",
            "valid_range": [0.0, 1000.0],
            "scale": 0.1,
            "coordinates": "lat",
        }})
    );
    assert_eq!(temp.parameters, Some(json!({"variable": "temperature"})));
    let st = structure(temp);
    assert_eq!(st.data_type.numpy(), "<f8");
    assert_eq!(st.shape, [5, 4, 3]);
    assert_eq!(st.chunks, [vec![1; 5], vec![4], vec![3]]);
    assert_eq!(
        st.dims.as_deref(),
        Some(&["time".to_string(), "x".to_string(), "y".to_string()][..])
    );
    // The wire form carries dims and resizable.
    let wire = temp.structure.clone().unwrap();
    assert_eq!(wire["dims"], json!(["time", "x", "y"]));
    assert_eq!(wire["resizable"], json!(false));

    assert_eq!(
        Value::Object(child(&d, "time").metadata.clone()),
        json!({"attrs": {"units": "seconds since 2000-01-01"}})
    );
    assert_eq!(
        Value::Object(child(&d, "lat").metadata.clone()),
        json!({"attrs": {}})
    );
    // NaN attributes become null, as upstream's JSON encoder writes them.
    assert_eq!(
        Value::Object(child(&d, "answer").metadata.clone()),
        json!({"attrs": {"nan": null}})
    );

    let dtype = |key: &str| structure(child(&d, key)).data_type.numpy();
    assert_eq!(dtype("x"), "<f4");
    assert_eq!(dtype("y"), "<i4");
    assert_eq!(dtype("counts"), "<i4");
    assert_eq!(dtype("big_endian"), "<i2");
    assert_eq!(dtype("unsigned"), "<u2");
    assert_eq!(dtype("records"), "<i8");
    assert_eq!(dtype("many"), "|u1");
    assert_eq!(dtype("answer"), "<i8");

    let answer = structure(child(&d, "answer"));
    assert!(answer.shape.is_empty() && answer.chunks.is_empty());
    assert_eq!(answer.dims, Some(vec![]));
    let records = structure(child(&d, "records"));
    assert_eq!(records.shape, [7, 4]);
    assert_eq!(records.dims, Some(vec!["rec".to_string(), "x".to_string()]));
    // A contiguous variable is one block (it is small).
    assert_eq!(structure(child(&d, "unsigned")).chunks, [vec![4], vec![3]]);
    // 25,000 file chunks of 2 are grouped into whole-chunk blocks.
    let many = structure(child(&d, "many"));
    assert!(many.chunks[0].len() <= 10_000, "{}", many.chunks[0].len());
    assert!(
        many.chunks[0][..many.chunks[0].len() - 1]
            .iter()
            .all(|c| c % 2 == 0)
    );

    check_values(&path, temp, "temperature", &|i| {
        temperature(i[0], i[1], i[2])
    });
    check_values(&path, child(&d, "time"), "time", &|i| i[0] as f64 * 0.5);
    check_values(&path, child(&d, "x"), "x", &|i| i[0] as f64 * 1.5);
    check_values(&path, child(&d, "y"), "y", &|i| (i[0] as f64 + 1.0) * 10.0);
    check_values(&path, child(&d, "counts"), "counts", &|i| {
        [7.0, -8.0, 9.0, -10.0][i[0]]
    });
    check_values(&path, child(&d, "big_endian"), "big_endian", &|i| {
        (i[0] * 4 + i[1]) as f64 - 7.0
    });
    check_values(&path, child(&d, "unsigned"), "unsigned", &|i| {
        ((i[0] * 3 + i[1]) * 1000) as f64
    });
    check_values(&path, child(&d, "records"), "records", &|i| {
        ((i[0] * 4 + i[1]) * 3) as f64
    });
    check_values(&path, child(&d, "many"), "many", &|i| (i[0] % 251) as f64);
    check_values(&path, child(&d, "answer"), "answer", &|_| 42.0);
}

fn check_classic(kind: &str) {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{kind}.nc"));
    write(&py, kind, &path);
    let d = NetcdfFormat.describe(&path).expect("describe");
    assert_eq!(d.family, StructureFamily::Container);
    assert_eq!(d.specs[0].name, "xarray_dataset");
    assert_eq!(
        Value::Object(d.metadata.clone()),
        json!({"attrs": {"title": "classic fixture", "answer": 42, "ratio": 0.1}})
    );
    let keys: Vec<&str> = d.children.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["time", "x", "temperature", "flags", "counts"]);
    let spec = |key: &str| child(&d, key).specs[0].name.clone();
    assert_eq!(spec("time"), "xarray_coord");
    assert_eq!(spec("x"), "xarray_coord");
    assert_eq!(spec("temperature"), "xarray_data_var");
    assert_eq!(spec("flags"), "xarray_data_var");

    let temp = child(&d, "temperature");
    assert_eq!(
        Value::Object(temp.metadata.clone()),
        json!({"attrs": {"units": "K"}})
    );
    let st = structure(temp);
    // Stored as float32, unpacked with a float64 scale_factor: float64, as
    // xarray decodes it.
    assert_eq!(st.data_type.numpy(), "<f8");
    assert_eq!(st.shape, [6, 4]);
    assert_eq!(st.chunks, [vec![6], vec![4]]);
    assert_eq!(st.dims, Some(vec!["time".to_string(), "x".to_string()]));
    assert_eq!(structure(child(&d, "flags")).data_type.numpy(), "|i1");
    assert_eq!(structure(child(&d, "counts")).data_type.numpy(), "<i2");

    // netCDF4-python packed `temperature / scale_factor` on write; served
    // unpacked, as xarray reads it.
    check_values(&path, temp, "temperature", &|i| temperature(i[0], i[1], 0));
    check_values(&path, child(&d, "time"), "time", &|i| i[0] as f64 * 2.0);
    check_values(&path, child(&d, "x"), "x", &|i| i[0] as f64 * 1.5);
    check_values(&path, child(&d, "flags"), "flags", &|i| i[0] as f64 - 3.0);
    check_values(&path, child(&d, "counts"), "counts", &|i| {
        [1.0, -2.0, 3.0, -4.0][i[0]]
    });
}

#[test]
fn netcdf3_classic_file_is_an_xarray_dataset() {
    check_classic("classic");
}

#[test]
fn netcdf3_64bit_offset_file_is_an_xarray_dataset() {
    check_classic("offset64");
}

#[test]
fn bad_blocks_and_parameters_are_errors() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("classic.nc");
    write(&py, "classic", &path);
    let d = NetcdfFormat.describe(&path).unwrap();
    let a = open(&path, child(&d, "temperature"));
    assert!(matches!(
        a.read_block(&[1, 0]),
        Err(AdapterError::BadRequest(_))
    ));
    assert!(matches!(
        a.read_block(&[0]),
        Err(AdapterError::BadRequest(_))
    ));
    for parameters in [
        json!({}),
        json!({"variable": "nope"}),
        json!({"variable": "label"}),
    ] {
        assert!(
            NetcdfFormat
                .open(&path, &parameters, StructureFamily::Array)
                .is_err(),
            "{parameters}"
        );
    }
    assert!(
        NetcdfFormat
            .open(&path, &json!({"variable": "x"}), StructureFamily::Container)
            .is_err()
    );
}

#[test]
fn unreadable_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("empty.nc", b""),
        ("text.nc", b"this is not a netcdf file at all"),
        (
            "truncated_classic.nc",
            b"CDF\x01\x00\x00\x00\x00\x00\x00\x00\x0a",
        ),
        ("truncated_hdf5.nc", b"\x89HDF\r\n\x1a\n\x00\x00\x00"),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        assert!(
            matches!(
                NetcdfFormat.describe(&path),
                Err(tiled_files::FileError::Unreadable { .. })
            ),
            "{name}"
        );
        assert!(
            NetcdfFormat
                .open(&path, &json!({"variable": "x"}), StructureFamily::Array)
                .is_err(),
            "{name}"
        );
    }
    assert!(
        NetcdfFormat
            .describe(&dir.path().join("missing.nc"))
            .is_err()
    );
}

#[test]
fn truncated_real_files_are_errors_not_panics() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for kind in ["nc4", "classic"] {
        let path = dir.path().join(format!("{kind}.nc"));
        write(&py, kind, &path);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [bytes.len() / 4, bytes.len() / 2, bytes.len() - 10] {
            let cut_path = dir.path().join(format!("{kind}_{cut}.nc"));
            std::fs::write(&cut_path, &bytes[..cut]).unwrap();
            // Describing may fail or succeed; reading may fail; nothing panics.
            if let Ok(d) = NetcdfFormat.describe(&cut_path) {
                for (_, c) in &d.children {
                    if let Ok(NodeData::Array(a)) = NetcdfFormat.open(
                        &cut_path,
                        c.parameters.as_ref().unwrap(),
                        StructureFamily::Array,
                    ) {
                        let _ = a.read(&ResolvedSlice::full(&a.structure().shape));
                    }
                }
            }
        }
    }
}

/// What xarray makes of a file, opened as upstream Tiled opens it
/// (`decode_times=False`, masking and scaling on): per variable, whether it
/// is a coordinate, its dims, dtype and attrs; and the global attrs.
const XARRAY_DUMP: &str = r#"
import json, sys
import numpy as np
import xarray

def plain(v):
    if isinstance(v, np.ndarray):
        return [plain(x) for x in v.tolist()] if v.dtype.kind != "f" or v.dtype.itemsize != 4 \
            else [float(str(x)) for x in v]
    if isinstance(v, np.floating) and v.dtype.itemsize == 4:
        v = float(str(v))
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v

ds = xarray.open_dataset(sys.argv[1], decode_times=False)
out = {"attrs": {k: plain(v) for k, v in ds.attrs.items()}, "variables": {}}
for name in ds.variables:
    var = ds.variables[name]
    out["variables"][name] = {
        "coord": name in ds.coords,
        "dims": list(var.dims),
        "dtype": var.dtype.str,
        "attrs": {k: plain(v) for k, v in var.attrs.items()},
    }
print(json.dumps(out))
"#;

fn compare_with_xarray(kind: &str, skipped: &[&str]) {
    let Some(py) = python() else { return };
    let has_xarray = Command::new(&py)
        .args(["-c", "import xarray"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_xarray {
        eprintln!("skipping: {py:?} cannot import xarray");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{kind}.nc"));
    write(&py, kind, &path);
    let out = Command::new(&py)
        .args(["-c", XARRAY_DUMP])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xr: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = NetcdfFormat.describe(&path).unwrap();
    assert_eq!(Value::Object(d.metadata.clone())["attrs"], xr["attrs"]);
    let vars = xr["variables"].as_object().unwrap();
    let mut names: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|k| !skipped.contains(k))
        .collect();
    let mut ours: Vec<&str> = d.children.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    ours.sort_unstable();
    assert_eq!(ours, names, "the variables xarray sees, less those skipped");
    for (key, c) in &d.children {
        let x = &vars[key];
        let coord = c.specs[0].name == "xarray_coord";
        assert_eq!(Value::Bool(coord), x["coord"], "{key}: coordinate or not");
        assert_eq!(
            c.structure.as_ref().unwrap()["dims"],
            x["dims"],
            "{key}: dims"
        );
        // Same element type (byte order aside: ours is always little-endian).
        let ours = c.structure.as_ref().unwrap()["data_type"].clone();
        let ours: tiled_model::dtype::DataType = serde_json::from_value(ours).unwrap();
        assert_eq!(
            &ours.numpy()[1..],
            &x["dtype"].as_str().unwrap()[1..],
            "{key}: dtype"
        );
        // xarray moves `coordinates` and the mask-and-scale attributes into
        // the encoding; everything else it keeps as the file has it.
        let mut attrs = c.metadata["attrs"].as_object().unwrap().clone();
        attrs.remove("coordinates");
        assert_eq!(Value::Object(attrs), x["attrs"], "{key}: attrs");
    }
}

#[test]
fn netcdf4_description_matches_xarray() {
    compare_with_xarray("nc4", &["label", "names"]);
}

#[test]
fn netcdf3_description_matches_xarray() {
    compare_with_xarray("classic", &["label"]);
}
