//! The generated demo tree served by `tiled serve demo`.
//!
//! Every value is a deterministic function of its position (documented, with
//! a NumPy re-implementation, in `docs/demo.md`), so tests recompute any
//! element without fetching the whole array, and big arrays are generated
//! block by block on demand instead of being held in memory.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow_schema::{DataType as ArrowType, Field, Schema, TimeUnit};
use serde_json::json;
use tiled_adapters::{ArrayData, GeneratedArray, MemoryArray, MemoryContainer, MemoryTable, Node};
use tiled_model::{ArrayStructure, DataType, Spec, StructDtype, StructField};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's finaliser applied to `idx + seed * GOLDEN`.
pub fn mix(idx: u64, seed: u64) -> u64 {
    let mut z = idx.wrapping_add(seed.wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A float64 in `[0, 1)` from `mix`.
pub fn unit(idx: u64, seed: u64) -> f64 {
    (mix(idx, seed) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Appends the bytes of `count` consecutive elements, starting at flat index
/// `start`, to the buffer. Working a row at a time keeps the per-element
/// code monomorphic and inlined (this is the demo's hot path).
type ElementWriter = Arc<dyn Fn(u64, usize, &mut Vec<u8>) + Send + Sync>;

/// Lift a one-element writer to a row writer.
fn per_element(f: impl Fn(u64, &mut Vec<u8>) + Send + Sync + 'static) -> ElementWriter {
    Arc::new(move |start, count, out| {
        for i in start..start + count as u64 {
            f(i, out);
        }
    })
}

fn element_writer(numpy: &str, seed: u64) -> ElementWriter {
    let big = numpy.starts_with('>');
    macro_rules! num {
        ($e:expr) => {{
            let f = $e;
            Arc::new(move |start: u64, count: usize, out: &mut Vec<u8>| {
                for i in start..start + count as u64 {
                    let v = f(i);
                    out.extend_from_slice(&if big { v.to_be_bytes() } else { v.to_le_bytes() });
                }
            })
        }};
    }
    match &numpy[1..] {
        "b1" => per_element(move |i, out| out.push((mix(i, seed) & 1) as u8)),
        "i1" => num!(move |i| mix(i, seed) as i8),
        "i2" => num!(move |i| mix(i, seed) as i16),
        "i4" => num!(move |i| mix(i, seed) as i32),
        "i8" => num!(move |i| mix(i, seed) as i64),
        "u1" => num!(move |i| mix(i, seed) as u8),
        "u2" => num!(move |i| mix(i, seed) as u16),
        "u4" => num!(move |i| mix(i, seed) as u32),
        "u8" => num!(move |i| mix(i, seed)),
        "f2" => num!(move |i| half::f16::from_f64((mix(i, seed) % 2048) as f64 / 8.0)),
        "f4" => num!(move |i| unit(i, seed) as f32),
        "f8" => num!(move |i| unit(i, seed)),
        "c8" => per_element(move |i, out| {
            out.extend_from_slice(&(unit(i, seed) as f32).to_le_bytes());
            out.extend_from_slice(&(unit(i, seed + 1000) as f32).to_le_bytes());
        }),
        "c16" => per_element(move |i, out| {
            out.extend_from_slice(&unit(i, seed).to_le_bytes());
            out.extend_from_slice(&unit(i, seed + 1000).to_le_bytes());
        }),
        "M8[ns]" => {
            num!(move |i| 1_600_000_000_000_000_000i64
                + (mix(i, seed) % 1_000_000_000_000_000) as i64)
        }
        "m8[s]" => num!(move |i| (mix(i, seed) % 1_000_000) as i64),
        "S10" => per_element(move |i, out| {
            let s = format!("b{i}");
            let start = out.len();
            out.extend_from_slice(s.as_bytes());
            out.resize(start + 10, 0);
        }),
        "U8" => per_element(move |i, out| {
            let s = format!("u{i}");
            let start = out.len();
            for c in s.chars() {
                out.extend_from_slice(&(c as u32).to_le_bytes());
            }
            out.resize(start + 32, 0);
        }),
        other => panic!("no demo generator for {other}"),
    }
}

fn structured_writer(seed: u64) -> ElementWriter {
    per_element(move |i, out| {
        out.extend_from_slice(&unit(i, seed).to_le_bytes());
        out.extend_from_slice(&(mix(i, seed + 1) as i32).to_le_bytes());
        let name = format!("n{}", i % 1000);
        let start = out.len();
        out.extend_from_slice(name.as_bytes());
        out.resize(start + 4, 0);
    })
}

/// An array generated block by block from `write(idx)`.
fn generated(
    dtype: DataType,
    shape: &[usize],
    chunks: Vec<Vec<usize>>,
    write: ElementWriter,
) -> GeneratedArray {
    let itemsize = dtype.itemsize();
    let structure =
        ArrayStructure::new(dtype, shape.to_vec(), chunks).expect("demo chunks tile their shapes");
    let full = shape.to_vec();
    GeneratedArray::new(
        structure,
        Arc::new(move |offset: &[usize], bshape: &[usize]| {
            let n: usize = bshape.iter().product();
            let mut out = Vec::with_capacity(n * itemsize);
            if n == 0 {
                return out;
            }
            let ndim = full.len();
            // Global C-order strides.
            let mut strides = vec![1u64; ndim];
            for d in (0..ndim.saturating_sub(1)).rev() {
                strides[d] = strides[d + 1] * full[d + 1] as u64;
            }
            let row = if ndim == 0 { 1 } else { bshape[ndim - 1] };
            let mut pos = vec![0usize; ndim.saturating_sub(1)];
            loop {
                let mut base: u64 = pos
                    .iter()
                    .enumerate()
                    .map(|(d, &p)| (offset[d] + p) as u64 * strides[d])
                    .sum();
                if ndim > 0 {
                    base += offset[ndim - 1] as u64;
                }
                write(base, row, &mut out);
                // Next row.
                let mut d = pos.len();
                loop {
                    if d == 0 {
                        return out;
                    }
                    d -= 1;
                    pos[d] += 1;
                    if pos[d] < bshape[d] {
                        break;
                    }
                    pos[d] = 0;
                }
            }
        }),
    )
}

fn seeded(numpy: &str, shape: &[usize], chunk: &[usize], seed: u64) -> Node {
    let dtype = DataType::from_numpy_str(numpy).expect("valid demo dtype");
    Node::array(generated(
        dtype,
        shape,
        ArrayStructure::regular_chunks(shape, chunk),
        element_writer(numpy, seed),
    ))
}

fn scalar(numpy: &str, bytes: Vec<u8>) -> Node {
    let dtype = DataType::from_numpy_str(numpy).expect("valid demo dtype");
    Node::array(
        MemoryArray::new(
            ArrayData::new(dtype, vec![], bytes).expect("scalar size"),
            vec![],
        )
        .expect("0-d chunks"),
    )
}

fn image(shape: &[usize], chunks: Vec<Vec<usize>>, seed: u64) -> Node {
    let dtype = DataType::from_numpy_str("<f8").expect("valid dtype");
    let mut a = generated(dtype, shape, chunks, element_writer("<f8", seed));
    a = a.with_dims(vec!["y".into(), "x".into()]);
    Node::array(a)
}

fn container(children: Vec<(&str, Node)>, description: &str) -> Node {
    Node::container(MemoryContainer::new(
        children.into_iter().map(|(k, n)| (k.to_string(), n)),
    ))
    .with_metadata(json!({ "description": description }))
}

/// Columns of `short_table` / `long_table` for rows `lo..hi`.
fn standard_batch(schema: &Arc<Schema>, lo: i64, hi: i64) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(lo..hi)),
        Arc::new(Float64Array::from_iter_values(
            (lo..hi).map(|i| i as f64 * 0.5),
        )),
        Arc::new(StringArray::from_iter_values(
            (lo..hi).map(|i| format!("s{i}")),
        )),
        Arc::new(BooleanArray::from_iter((lo..hi).map(|i| Some(i % 2 == 0)))),
        Arc::new(TimestampNanosecondArray::from_iter_values(
            (lo..hi).map(|i| (1_600_000_000 + i) * 1_000_000_000),
        )),
    ];
    RecordBatch::try_new(schema.clone(), columns).expect("demo batch matches schema")
}

fn standard_table(rows: i64, partitions: i64) -> Node {
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", ArrowType::Int64, false),
        Field::new("x", ArrowType::Float64, false),
        Field::new("label", ArrowType::Utf8, false),
        Field::new("flag", ArrowType::Boolean, false),
        Field::new(
            "time",
            ArrowType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        ),
    ]));
    let per = rows / partitions;
    let batches = (0..partitions)
        .map(|p| {
            standard_batch(
                &schema,
                p * per,
                if p == partitions - 1 {
                    rows
                } else {
                    (p + 1) * per
                },
            )
        })
        .collect();
    Node::table(MemoryTable::new(schema, batches).expect("demo table"))
}

fn wide_table() -> Node {
    let fields: Vec<Field> = (0..100)
        .map(|c| Field::new(format!("c{c:03}"), ArrowType::Float64, false))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let columns: Vec<ArrayRef> = (0..100)
        .map(|c| {
            Arc::new(Float64Array::from_iter_values(
                (0..10).map(|i| (i * 100 + c) as f64),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("wide batch");
    Node::table(MemoryTable::new(schema, vec![batch]).expect("wide table"))
}

fn many() -> Node {
    let colors = ["red", "green", "blue"];
    let children = (0..1000u64).map(|k| {
        let color = colors[(k % 3) as usize];
        let mut tags = vec![if k % 2 == 0 { "even" } else { "odd" }];
        if k % 3 == 0 {
            tags.push("fizz");
        }
        let mut md = json!({
            "i": k, "group": k % 10, "color": color, "score": k as f64 * 0.25,
            "name": format!("item {k}"), "tags": tags,
            "nested": {"x": k % 7, "label": format!("l{}", k % 5)},
            "description": format!("A {color} sample from group {}", k % 10),
        });
        if k % 7 == 0 {
            md["optional"] = json!(k);
        }
        let mut specs = Vec::new();
        if k % 4 == 0 {
            specs.push(Spec::new("quad"));
        }
        if k % 5 == 0 {
            specs.push(Spec::new("pent"));
        }
        let node = if k % 2 == 0 {
            Node::container(MemoryContainer::default())
        } else {
            let bytes = [k, k + 1, k + 2]
                .iter()
                .flat_map(|v| (*v as i64).to_le_bytes())
                .collect();
            let dtype = DataType::from_numpy_str("<i8").expect("dtype");
            Node::array(
                MemoryArray::new(
                    ArrayData::new(dtype, vec![3], bytes).expect("size"),
                    vec![vec![3]],
                )
                .expect("chunks"),
            )
        };
        (
            format!("item_{k:04}"),
            node.with_metadata(md).with_specs(specs),
        )
    });
    Node::container(MemoryContainer::new(children))
        .with_metadata(json!({"description": "1000 children with metadata, for search"}))
}

fn dtypes() -> Node {
    let one_d = |numpy: &str, seed: u64| seeded(numpy, &[100], &[50], seed);
    let structured = {
        let f = |n: &str, t: &str| StructField {
            name: n.into(),
            dtype: DataType::from_numpy_str(t).expect("dtype"),
            shape: None,
        };
        let dtype = DataType::Struct(StructDtype {
            itemsize: 16,
            fields: vec![f("x", "<f8"), f("y", "<i4"), f("name", "|S4")],
        });
        Node::array(generated(
            dtype,
            &[100],
            vec![vec![50, 50]],
            structured_writer(29),
        ))
    };
    let int64_2d = Node::array(generated(
        DataType::from_numpy_str("<i8").expect("dtype"),
        &[20, 30],
        vec![vec![7, 7, 6], vec![11, 11, 8]],
        element_writer("<i8", 30),
    ));
    container(
        vec![
            ("bool", one_d("|b1", 10)),
            ("int8", one_d("|i1", 11)),
            ("int16", one_d("<i2", 12)),
            ("int32", one_d("<i4", 13)),
            ("int64", one_d("<i8", 14)),
            ("uint8", one_d("|u1", 15)),
            ("uint16", one_d("<u2", 16)),
            ("uint32", one_d("<u4", 17)),
            ("uint64", one_d("<u8", 18)),
            ("float16", one_d("<f2", 19)),
            ("float32", one_d("<f4", 20)),
            ("float64", one_d("<f8", 21)),
            ("float64_big_endian", one_d(">f8", 22)),
            ("int32_big_endian", one_d(">i4", 23)),
            ("complex64", one_d("<c8", 24)),
            ("complex128", one_d("<c16", 26)),
            ("bytes", one_d("|S10", 0)),
            ("unicode", one_d("<U8", 0)),
            ("datetime64", one_d("<M8[ns]", 27)),
            ("timedelta64", one_d("<m8[s]", 28)),
            ("structured", structured),
            ("int64_2d", int64_2d),
            ("uint8_2d", seeded("|u1", &[20, 30], &[10, 30], 31)),
            ("uint16_2d", seeded("<u2", &[20, 30], &[10, 30], 32)),
        ],
        "one array per data type",
    )
}

/// An xarray-style dataset: the container and its variables carry the specs
/// and `attrs` metadata the upstream client needs to rebuild an
/// `xarray.Dataset`.
fn xarray_dataset() -> Node {
    let var = |node: Node, spec: &str, attrs: serde_json::Value| {
        node.with_specs(vec![Spec::new(spec)])
            .with_metadata(json!({ "attrs": attrs }))
    };
    let f8 = || DataType::from_numpy_str("<f8").expect("dtype");
    let time = generated(f8(), &[100], vec![vec![100]], {
        Arc::new(|start: u64, count: usize, out: &mut Vec<u8>| {
            for i in start..start + count as u64 {
                out.extend_from_slice(&(i as f64 * 0.5).to_le_bytes());
            }
        })
    })
    .with_dims(vec!["time".into()]);
    let temperature = generated(f8(), &[100], vec![vec![100]], element_writer("<f8", 40))
        .with_dims(vec!["time".into()]);
    let pressure = generated(
        DataType::from_numpy_str("<i8").expect("dtype"),
        &[100],
        vec![vec![100]],
        element_writer("<i8", 41),
    )
    .with_dims(vec!["time".into()]);
    let image = generated(
        f8(),
        &[100, 20],
        vec![vec![50, 50], vec![20]],
        element_writer("<f8", 42),
    )
    .with_dims(vec!["time".into(), "x".into()]);
    Node::container(MemoryContainer::new([
        (
            "time".to_string(),
            var(Node::array(time), "xarray_coord", json!({"units": "s"})),
        ),
        (
            "temperature".to_string(),
            var(
                Node::array(temperature),
                "xarray_data_var",
                json!({"units": "K"}),
            ),
        ),
        (
            "pressure".to_string(),
            var(Node::array(pressure), "xarray_data_var", json!({})),
        ),
        (
            "image".to_string(),
            var(
                Node::array(image),
                "xarray_data_var",
                json!({"long_name": "detector image"}),
            ),
        ),
    ]))
    .with_specs(vec![Spec::new("xarray_dataset")])
    .with_metadata(
        json!({"attrs": {"title": "A demo dataset"}, "description": "an xarray-style dataset"}),
    )
}

/// Build the whole demo tree.
pub fn demo_tree() -> Node {
    let scalars = container(
        vec![
            (
                "pi",
                scalar("<f8", std::f64::consts::PI.to_le_bytes().to_vec()),
            ),
            (
                "e",
                scalar("<f8", std::f64::consts::E.to_le_bytes().to_vec()),
            ),
            ("answer", scalar("<i8", 42i64.to_le_bytes().to_vec())),
            ("negative", scalar("<i4", (-7i32).to_le_bytes().to_vec())),
            ("yes", scalar("|b1", vec![1])),
        ],
        "zero-dimensional arrays",
    );
    let images = container(
        vec![
            ("tiny_image", image(&[50, 50], vec![vec![50], vec![50]], 1)),
            (
                "small_image",
                image(
                    &[300, 300],
                    ArrayStructure::regular_chunks(&[300, 300], &[100, 100]),
                    2,
                ),
            ),
            (
                "medium_image",
                image(&[1000, 1000], vec![vec![300, 300, 400], vec![250, 750]], 3),
            ),
            (
                "big_image",
                image(
                    &[10000, 10000],
                    ArrayStructure::regular_chunks(&[10000, 10000], &[1024, 1024]),
                    4,
                ),
            ),
            ("rgb_image", seeded("|u1", &[32, 48, 3], &[16, 48, 3], 7)),
        ],
        "2-d images of growing size, and one RGB image",
    );
    let cubes = container(
        vec![
            ("tiny_cube", seeded("<f8", &[10, 10, 10], &[5, 5, 5], 5)),
            (
                "tiny_hypercube",
                seeded("<f8", &[4, 5, 6, 7, 8], &[2, 5, 3, 7, 4], 6),
            ),
        ],
        "3-d and 5-d arrays",
    );
    let nested = container(
        vec![("images", images), ("cubes", cubes)],
        "nested containers",
    );
    let tables = container(
        vec![
            ("short_table", standard_table(10, 1)),
            ("long_table", standard_table(100_000, 5)),
            ("wide_table", wide_table()),
        ],
        "tables",
    );
    Node::container(MemoryContainer::new(
        [
            ("scalars", scalars),
            ("nested", nested),
            ("dtypes", dtypes()),
            ("tables", tables),
            ("many", many()),
            ("xarray", xarray_dataset()),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_string(), n)),
    ))
    .with_metadata(json!({"description": "tiled-rs demo tree"}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiled_adapters::NodeData;
    use tiled_model::NdSlice;

    fn array(node: &Node, path: &[&str]) -> Arc<dyn tiled_adapters::ArrayAdapter> {
        let mut n = node.clone();
        for p in path {
            let NodeData::Container(c) = &n.data else {
                panic!()
            };
            n = c.get(p).unwrap().unwrap();
        }
        match n.data {
            NodeData::Array(a) => a,
            _ => panic!(),
        }
    }

    #[test]
    fn generated_values_follow_the_documented_formula() {
        let tree = demo_tree();
        let big = array(&tree, &["nested", "images", "big_image"]);
        let sel = NdSlice::parse("1020:1030:3,5")
            .unwrap()
            .resolve(&[10000, 10000])
            .unwrap();
        let got = big.read(&sel).unwrap();
        assert_eq!(got.shape, vec![4]);
        for (k, row) in [1020u64, 1023, 1026, 1029].iter().enumerate() {
            let v = f64::from_le_bytes(got.bytes[k * 8..k * 8 + 8].try_into().unwrap());
            assert_eq!(v, unit(row * 10000 + 5, 4));
        }
        let be = array(&tree, &["dtypes", "float64_big_endian"]);
        let got = be.read_block(&[1]).unwrap();
        assert_eq!(got.bytes[..8], unit(50, 22).to_be_bytes());
    }

    /// Every array and table of the demo passes the adapter conformance
    /// suite (big arrays by sampled blocks and windowed slices).
    #[test]
    fn every_demo_node_conforms() {
        fn walk(path: String, node: &Node, seen: &mut usize) {
            match &node.data {
                NodeData::Container(c) => {
                    let page = c.search(&[], &[], 0, usize::MAX).unwrap();
                    for (k, child) in page.entries.iter().take(40) {
                        walk(format!("{path}/{k}"), child, seen);
                    }
                }
                NodeData::Array(a) => {
                    tiled_adapters::conformance::check_array(&path, a.as_ref(), 1 << 20);
                    *seen += 1;
                }
                NodeData::Table(t) => {
                    tiled_adapters::conformance::check_table(&path, t.as_ref());
                    *seen += 1;
                }
            }
        }
        let mut seen = 0;
        walk(String::new(), &demo_tree(), &mut seen);
        assert!(seen > 40, "walked {seen} data nodes");
    }

    #[test]
    fn mix_matches_reference_values() {
        // splitmix64 of 0 with seed 1 is the well-known first output of a
        // generator seeded with 0.
        assert_eq!(mix(0, 1), 0xE220_A839_7B1D_CDAF);
    }
}
