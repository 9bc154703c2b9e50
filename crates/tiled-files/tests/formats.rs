//! Every file format through the shared adapter conformance checks
//! (`tiled_adapters::conformance`), on files written here by the format
//! crates, plus the directory walk into a catalog and the opener's refusal
//! of paths outside the served root.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::json;
use tiled_adapters::conformance::{check_array, check_table};
use tiled_adapters::{ArrayAdapter, NodeData};
use tiled_catalog::{Catalog, CatalogContainer};
use tiled_files::{FileFormat, FileOpener, walk};
use tiled_model::StructureFamily;

fn open(format: &dyn FileFormat, path: &Path) -> NodeData {
    let d = format.describe(path).expect("describe");
    format
        .open(path, d.parameters.as_ref().unwrap_or(&json!({})), d.family)
        .expect("open")
}

fn array(data: NodeData) -> Arc<dyn ArrayAdapter> {
    match data {
        NodeData::Array(a) => a,
        _ => panic!("not an array"),
    }
}

fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let n = 50;
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..n)),
            Arc::new(Float64Array::from_iter_values(
                (0..n).map(|i| i as f64 * 0.5 + 0.25),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("row {i}")),
            )),
        ],
    )
    .unwrap()
}

fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) {
    let shape_text = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = File::create(path).unwrap();
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn arrays_pass_the_conformance_checks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // NPY, big-endian float64, 3-d.
    let values: Vec<u8> = (0..(5 * 6 * 7))
        .flat_map(|i| (f64::from(i) * 1.5).to_be_bytes())
        .collect();
    write_npy(&d.join("cube.npy"), ">f8", &[5, 6, 7], &values);
    let cube = array(open(&tiled_files::arrays::NpyFormat, &d.join("cube.npy")));
    assert_eq!(cube.structure().shape, [5, 6, 7]);
    check_array("npy", cube.as_ref(), 1 << 20);
    let full = cube.read_block(&[0, 0, 0]).unwrap();
    assert_eq!(
        full.bytes, values,
        "NPY bytes as stored, in the file's byte order"
    );

    // TIFF: a 4-page uint16 stack.
    {
        let mut enc = tiff::encoder::TiffEncoder::new(BufWriter::new(
            File::create(d.join("stack.tif")).unwrap(),
        ))
        .unwrap();
        for p in 0..4u16 {
            let page: Vec<u16> = (0..(9 * 11)).map(|i| i as u16 * 3 + p * 1000).collect();
            enc.write_image::<tiff::encoder::colortype::Gray16>(11, 9, &page)
                .unwrap();
        }
    }
    let stack = array(open(&tiled_files::arrays::TiffFormat, &d.join("stack.tif")));
    assert_eq!(stack.structure().shape, [4, 9, 11]);
    assert_eq!(stack.structure().chunks[0], [1, 1, 1, 1]);
    check_array("tiff stack", stack.as_ref(), 1 << 20);
    let page2 = stack.read_block(&[2, 0, 0]).unwrap();
    assert_eq!(u16::from_le_bytes([page2.bytes[2], page2.bytes[3]]), 2003);

    // PNG: 16-bit grey.
    {
        let w = BufWriter::new(File::create(d.join("g16.png")).unwrap());
        let mut enc = png::Encoder::new(w, 10, 8);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Sixteen);
        let mut writer = enc.write_header().unwrap();
        let data: Vec<u8> = (0..80u16).flat_map(|i| (i * 300).to_be_bytes()).collect();
        writer.write_image_data(&data).unwrap();
    }
    let png16 = array(open(&tiled_files::arrays::PngFormat, &d.join("g16.png")));
    assert_eq!(png16.structure().shape, [8, 10]);
    check_array("png", png16.as_ref(), 1 << 20);
    let px = png16.read_block(&[0, 0]).unwrap();
    assert_eq!(u16::from_le_bytes([px.bytes[2], px.bytes[3]]), 300);

    // A numbered sequence of NPY frames.
    let mut paths = Vec::new();
    for k in 0..3u8 {
        let p = d.join(format!("f{k}.npy"));
        write_npy(&p, "|u1", &[2, 3], &[k; 6]);
        paths.push(p);
    }
    let seq_format = tiled_files::arrays::SequenceFormat::npy();
    let described = tiled_files::arrays::describe_sequence(&seq_format, &paths).unwrap();
    let params = json!({"paths": paths.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>()});
    let seq = array(
        seq_format
            .open(&paths[0], &params, StructureFamily::Array)
            .unwrap(),
    );
    assert_eq!(
        described.structure,
        Some(serde_json::to_value(seq.structure()).unwrap())
    );
    assert_eq!(seq.structure().shape, [3, 2, 3]);
    check_array("npy sequence", seq.as_ref(), 1 << 20);
    assert_eq!(seq.read_block(&[2, 0, 0]).unwrap().bytes, [2; 6]);
}

#[test]
fn tables_pass_the_conformance_checks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = batch();

    // Parquet with row groups of 20 → partitions of 20, 20, 10.
    {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(20))
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            File::create(d.join("t.parquet")).unwrap(),
            b.schema(),
            Some(props),
        )
        .unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
    }
    let NodeData::Table(pq) = open(&tiled_files::tables::ParquetFormat, &d.join("t.parquet"))
    else {
        panic!()
    };
    assert_eq!(pq.structure().npartitions, 3);
    check_table("parquet", pq.as_ref());
    let cols = ["s".to_string(), "i".to_string()];
    let part = pq.read_partition(2, Some(&cols)).unwrap();
    assert_eq!(part.num_rows(), 10);
    assert_eq!(part.schema().field(0).name(), "s");

    // Arrow IPC file with two batches.
    {
        let mut w = arrow_ipc::writer::FileWriter::try_new(
            File::create(d.join("t.arrow")).unwrap(),
            &b.schema(),
        )
        .unwrap();
        w.write(&b.slice(0, 30)).unwrap();
        w.write(&b.slice(30, 20)).unwrap();
        w.finish().unwrap();
    }
    let NodeData::Table(ipc) = open(&tiled_files::tables::ArrowFormat, &d.join("t.arrow")) else {
        panic!()
    };
    assert_eq!(ipc.structure().npartitions, 2);
    check_table("arrow", ipc.as_ref());

    // CSV.
    {
        let mut w = arrow_csv::WriterBuilder::new()
            .with_header(true)
            .build(File::create(d.join("t.csv")).unwrap());
        w.write(&b).unwrap();
    }
    let csv = tiled_files::tables::CsvFormat::new(b',');
    let NodeData::Table(t) = open(&csv, &d.join("t.csv")) else {
        panic!()
    };
    check_table("csv", t.as_ref());
    assert_eq!(t.read(None).unwrap()[0], b, "CSV types inferred as written");
    // Partitioned by size at line boundaries: the same rows, in order.
    let small = tiled_files::tables::CsvFormat {
        delimiter: b',',
        partition_bytes: 200,
    };
    let NodeData::Table(parts) = open(&small, &d.join("t.csv")) else {
        panic!()
    };
    let n = parts.structure().npartitions;
    assert!(n > 3, "{n} partitions");
    check_table("csv partitions", parts.as_ref());
    let all = parts.read(None).unwrap();
    let joined = arrow_select::concat::concat_batches(&b.schema(), &all).unwrap();
    assert_eq!(joined, b);
    let col = parts.column_array("x").unwrap();
    assert_eq!(col.structure().shape, [50]);

    // Excel: two sheets.
    {
        let mut wb = rust_xlsxwriter::Workbook::new();
        let s = wb.add_worksheet().set_name("one").unwrap();
        s.write(0, 0, "n").unwrap();
        s.write(0, 1, "label").unwrap();
        for r in 1..=5u32 {
            s.write(r, 0, f64::from(r) * 2.0).unwrap();
            s.write(r, 1, format!("L{r}")).unwrap();
        }
        let s2 = wb.add_worksheet().set_name("two").unwrap();
        s2.write(0, 0, "v").unwrap();
        s2.write(1, 0, 0.25).unwrap();
        wb.save(d.join("book.xlsx")).unwrap();
    }
    let excel = tiled_files::excel::ExcelFormat;
    let described = excel.describe(&d.join("book.xlsx")).unwrap();
    let keys: Vec<&str> = described.children.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["one", "two"]);
    let (_, one) = &described.children[0];
    let NodeData::Table(sheet) = excel
        .open(
            &d.join("book.xlsx"),
            one.parameters.as_ref().unwrap(),
            StructureFamily::Table,
        )
        .unwrap()
    else {
        panic!()
    };
    check_table("excel", sheet.as_ref());
    let read = sheet.read(None).unwrap();
    assert_eq!(read[0].schema().field(0).data_type(), &DataType::Int64);
    assert_eq!(read[0].num_rows(), 5);
}

#[test]
fn unreadable_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, b"\x93NUMPY\x01\x00garbage").unwrap();
    for f in tiled_files::formats() {
        if f.mimetype().starts_with("text/") {
            continue; // any bytes are a (one-column) CSV
        }
        assert!(f.describe(&bad).is_err(), "{}", f.mimetype());
    }
}

#[test]
fn walk_registers_and_the_opener_stays_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    write_npy(
        &root.join("a.npy"),
        "<i4",
        &[3],
        &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0],
    );
    write_npy(&root.join("sub").join("frame_2.npy"), "|u1", &[2], &[2, 2]);
    write_npy(
        &root.join("sub").join("frame_10.npy"),
        "|u1",
        &[2],
        &[10, 10],
    );
    std::fs::write(root.join("t.csv"), "a,b\n1,x\n2,y\n").unwrap();
    std::fs::write(root.join("t.tsv"), "a\tb\n1\tx\n").unwrap(); // same key "t": skipped
    std::fs::write(root.join(".hidden.csv"), "a\n1\n").unwrap();
    // A link out of the root, and the file it points to.
    let outside = dir.path().join("secret.csv");
    std::fs::write(&outside, "secret\n42\n").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("leak.csv")).unwrap();

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
    assert_eq!(report.nodes, 4, "{report:?}"); // a, sub, sub/frame_, t
    assert_eq!(report.skipped, 2, "{report:?}"); // t.tsv (key taken), leak.csv (outside)
    let root_node = CatalogContainer::root_node(catalog.clone()).unwrap();
    let NodeData::Container(top) = &root_node.data else {
        panic!()
    };
    let page = top.search(&[], &[], 0, 100).unwrap();
    let keys: Vec<&str> = page.entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "sub", "t"]);
    let NodeData::Container(sub) = top.get("sub").unwrap().unwrap().data else {
        panic!()
    };
    let NodeData::Array(frames) = sub.get("frame_").unwrap().unwrap().data else {
        panic!()
    };
    assert_eq!(frames.structure().shape, [2, 2]);
    // Natural order: frame_2 before frame_10.
    assert_eq!(frames.read_block(&[0, 0]).unwrap().bytes, [2, 2]);
    assert_eq!(frames.read_block(&[1, 0]).unwrap().bytes, [10, 10]);

    // A data source naming a file outside the root is refused at open.
    let id = catalog.node_id(&["t".into()]).unwrap().unwrap();
    let mut source = catalog.data_sources(id).unwrap().remove(0);
    source.assets[0].data_uri = tiled_files::file_uri(&outside);
    let opener = FileOpener::new(
        Arc::new(tiled_files::tables::CsvFormat::new(b',')),
        vec![real_root],
    );
    let err = tiled_catalog::Opener::open(&opener, &source, StructureFamily::Table)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("outside"), "{err}");
}

#[test]
fn sync_picks_up_new_changed_and_removed_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("d")).unwrap();
    write_npy(&root.join("a.npy"), "|u1", &[2], &[1, 1]);
    write_npy(&root.join("d").join("b.npy"), "|u1", &[2], &[2, 2]);
    let mut catalog = Catalog::temporary().unwrap();
    let formats = tiled_files::formats();
    for f in &formats {
        catalog.register_opener(
            f.mimetype(),
            Arc::new(FileOpener::new(
                f.clone(),
                vec![root.canonicalize().unwrap()],
            )),
        );
    }
    let catalog = Arc::new(catalog);
    let walker = walk::Walker::new(
        catalog.clone(),
        &formats,
        root,
        walk::WalkOptions::default(),
    )
    .unwrap();
    assert_eq!(walker.register(&[]).unwrap().nodes, 3);
    // Nothing changed: nothing done.
    assert_eq!(walker.sync(&[]).unwrap(), walk::WalkReport::default());
    let read = |path: &[&str]| -> Vec<u8> {
        let root = CatalogContainer::root_node(catalog.clone()).unwrap();
        let mut node = root;
        for k in path {
            let NodeData::Container(c) = &node.data else {
                panic!()
            };
            node = c.get(k).unwrap().unwrap();
        }
        let NodeData::Array(a) = node.data else {
            panic!()
        };
        a.read_block(&vec![0; a.structure().shape.len()])
            .unwrap()
            .bytes
    };
    // New, changed (a different size), removed.
    write_npy(&root.join("c.npy"), "|u1", &[1], &[3]);
    write_npy(&root.join("a.npy"), "|u1", &[3], &[7, 7, 7]);
    std::fs::remove_file(root.join("d").join("b.npy")).unwrap();
    let report = walker.sync(&[]).unwrap();
    assert_eq!((report.nodes, report.removed), (2, 2), "{report:?}");
    assert_eq!(read(&["c"]), [3]);
    assert_eq!(read(&["a"]), [7, 7, 7]);
    let root_node = CatalogContainer::root_node(catalog.clone()).unwrap();
    let NodeData::Container(top) = &root_node.data else {
        panic!()
    };
    let NodeData::Container(d) = top.get("d").unwrap().unwrap().data else {
        panic!()
    };
    assert_eq!(d.len().unwrap(), 0);
    // A removed directory goes with everything in it.
    std::fs::remove_dir(root.join("d")).unwrap();
    assert_eq!(walker.sync(&[]).unwrap().removed, 1);
    assert!(top.get("d").unwrap().is_none());
}

#[test]
fn keep_ext_and_extension_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_npy(&root.join("a.npy"), "|u1", &[1], &[5]);
    std::fs::write(root.join("table.dat"), "a,b\n1,2\n").unwrap();
    let formats = tiled_files::formats();
    let keys = |options: walk::WalkOptions| -> Vec<String> {
        let catalog = Arc::new(Catalog::temporary().unwrap());
        let walker = walk::Walker::new(catalog.clone(), &formats, root, options).unwrap();
        walker.register(&[]).unwrap();
        let root_node = CatalogContainer::root_node(catalog).unwrap();
        let NodeData::Container(top) = &root_node.data else {
            panic!()
        };
        let page = top.search(&[], &[], 0, 100).unwrap();
        page.entries.into_iter().map(|(k, _)| k).collect()
    };
    // By default `.dat` has no reader and extensions are stripped.
    assert_eq!(keys(walk::WalkOptions::default()), ["a"]);
    let mut options = walk::WalkOptions {
        keep_ext: true,
        ..Default::default()
    };
    options
        .mimetypes_by_ext
        .insert(".dat".into(), "text/csv".into());
    assert_eq!(keys(options), ["a.npy", "table.dat"]);
}
