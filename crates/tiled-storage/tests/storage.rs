//! Conformance tests shared by the local and S3 backends.
//!
//! The S3 run needs `TILED_TEST_S3_URI` (see the crate README).

use std::path::Path;

use bytes::Bytes;
use tiled_storage::{Storage, StorageError, TEMP_FILE_PREFIX};
use zarrs::array::{Array, ArrayBuilder, data_type};
use zarrs::storage::{ListableStorageTraits, ReadableStorageTraits, WritableStorageTraits};

fn check_unique_name(s: &Storage) {
    let name = s.unique_name("my key/../é!", ".zarr");
    let (prefix, rest) = name.split_once('-').expect("dash");
    assert_eq!(prefix, "mykey");
    let hex = rest.strip_suffix(".zarr").expect("suffix");
    assert_eq!(hex.len(), 16, "{name}");
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
    assert_ne!(name, s.unique_name("my key/../é!", ".zarr"));
    let long = s.unique_name(&"x".repeat(100), "");
    assert_eq!(long.len(), 40 + 1 + 16);
    let bare = s.unique_name("%%%", ".bin");
    assert_eq!(bare.len(), 16 + 4, "{bare}");
}

fn check_uris(s: &Storage, base: &str) {
    let root = s.root_uri();
    assert!(!root.contains('?'), "{root}");
    assert!(!root.ends_with('/'), "{root}");
    let rel = format!("{base}/a/b c.bin");
    let uri = s.uri(&rel);
    assert!(
        uri.starts_with(&format!("{root}/")),
        "{uri} not under {root}"
    );
    assert_eq!(s.relative(&uri).as_deref(), Some(rel.as_str()));
    assert_eq!(s.relative(&s.uri(base)).as_deref(), Some(base));
    // Refused: the root itself, escapes, odd segments, foreign roots.
    for bad in [
        root.clone(),
        format!("{root}/"),
        format!("{root}/../x"),
        format!("{root}/{base}/../../x"),
        format!("{root}/a//b"),
        format!("{root}/./a"),
        format!("{root}/a/"),
        format!("{root}x/y"),
        "s3://some-other-bucket/x".to_string(),
        "file:///definitely/elsewhere/x".to_string(),
        "http://example.com/x".to_string(),
        "relative/x".to_string(),
    ] {
        assert_eq!(s.relative(&bad), None, "{bad}");
    }
    if let Some(dir) = s.local_root() {
        assert!(dir.is_absolute());
        let localhost = format!("file://localhost{}/{base}/x", dir.display());
        assert_eq!(
            s.relative(&localhost).as_deref(),
            Some(format!("{base}/x").as_str())
        );
    } else {
        assert!(root.starts_with("s3://"), "{root}");
    }
}

fn check_objects(s: &Storage, base: &str) {
    let key = format!("{base}/dir/obj.bin");
    s.put(&key, Bytes::from_static(b"0123456789")).expect("put");
    assert_eq!(s.get(&key).expect("get"), Bytes::from_static(b"0123456789"));
    assert_eq!(s.size(&key).expect("size"), 10);
    assert_eq!(&s.get_range(&key, 2..5).expect("range")[..], b"234");
    assert_eq!(&s.get_range(&key, 0..10).expect("range")[..], b"0123456789");
    assert_eq!(&s.get_range(&key, 7..100).expect("clamped")[..], b"789");
    assert!(s.get_range(&key, 4..4).expect("empty").is_empty());
    assert!(matches!(
        s.get_range(&key, 10..12),
        Err(StorageError::InvalidRange(_))
    ));
    assert!(matches!(
        s.get_range(&key, 20..30),
        Err(StorageError::InvalidRange(_))
    ));
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = s.get_range(&key, 5..2);
    assert!(matches!(reversed, Err(StorageError::InvalidRange(_))));

    // Overwrite with something shorter.
    s.put(&key, Bytes::from_static(b"abc")).expect("overwrite");
    assert_eq!(s.get(&key).expect("get"), Bytes::from_static(b"abc"));
    assert_eq!(s.size(&key).expect("size"), 3);
    // Empty objects are objects.
    let empty = format!("{base}/empty");
    s.put(&empty, Bytes::new()).expect("put empty");
    assert_eq!(s.size(&empty).expect("size"), 0);
    assert!(s.get(&empty).expect("get").is_empty());

    // Missing objects.
    let missing = format!("{base}/no/such/object");
    assert!(matches!(s.get(&missing), Err(StorageError::NotFound(_))));
    assert!(matches!(s.size(&missing), Err(StorageError::NotFound(_))));
    assert!(matches!(
        s.get_range(&missing, 0..1),
        Err(StorageError::NotFound(_))
    ));
    // A "directory" is not an object.
    assert!(matches!(
        s.get(&format!("{base}/dir")),
        Err(StorageError::NotFound(_))
    ));

    // Bad keys.
    for bad in ["", "/abs", "../x", "a//b", "a/./b", "a/"] {
        assert!(
            matches!(
                s.put(bad, Bytes::from_static(b"x")),
                Err(StorageError::BadKey(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(s.get(bad), Err(StorageError::BadKey(_))),
            "{bad:?}"
        );
        assert!(
            matches!(s.delete_prefix(bad), Err(StorageError::BadKey(_))),
            "{bad:?}"
        );
    }
}

fn check_delete_prefix(s: &Storage, base: &str) {
    let keep = [
        format!("{base}/tree2/z"),
        format!("{base}/tree.bin"),
        format!("{base}/other/tree/x"),
    ];
    let gone = [
        format!("{base}/tree/x"),
        format!("{base}/tree/sub/y"),
        format!("{base}/tree/sub/deeper/z"),
    ];
    for key in keep.iter().chain(&gone) {
        s.put(key, Bytes::from(key.clone())).expect("put");
    }
    s.delete_prefix(&format!("{base}/tree"))
        .expect("delete_prefix");
    for key in &gone {
        assert!(
            matches!(s.get(key), Err(StorageError::NotFound(_))),
            "{key} survived"
        );
    }
    for key in &keep {
        assert_eq!(s.get(key).expect("kept"), Bytes::from(key.clone()));
    }
    // Missing is fine; a single object can be deleted too.
    s.delete_prefix(&format!("{base}/tree")).expect("again");
    s.delete_prefix(&format!("{base}/never/was"))
        .expect("missing");
    s.delete_prefix(&keep[1]).expect("one object");
    assert!(matches!(s.get(&keep[1]), Err(StorageError::NotFound(_))));
}

fn check_zarr(s: &Storage, base: &str) {
    let rel = format!("{base}/{}", s.unique_name("array", ".zarr"));
    let (rows, cols) = (10u64, 7u64);
    let data: Vec<i32> = (0..(rows * cols) as i32).map(|i| i * 3 - 50).collect();
    {
        let store = s.zarr_store(&rel).expect("zarr store");
        let array = ArrayBuilder::new(vec![rows, cols], vec![4, 3], data_type::int32(), 0i32)
            .build(store, "/")
            .expect("build");
        array.store_metadata().expect("metadata");
        array
            .store_array_subset(&[0..rows, 0..cols], data.clone())
            .expect("store");
    }
    // The array is visible through the plain object API as well.
    let meta = s.get(&format!("{rel}/zarr.json")).expect("zarr.json");
    let meta: serde_json::Value = serde_json::from_slice(&meta).expect("json");
    assert_eq!(meta["zarr_format"], 3);
    assert_eq!(meta["data_type"], "int32");
    assert!(s.size(&format!("{rel}/c/0/0")).expect("chunk") > 0);
    assert!(s.size(&format!("{rel}/c/2/2")).expect("edge chunk") > 0);

    let store = s.zarr_store(&rel).expect("zarr store");
    let array = Array::open(store.clone(), "/").expect("open");
    assert_eq!(array.shape(), &[rows, cols]);
    let back: Vec<i32> = array
        .retrieve_array_subset(&[0..rows, 0..cols])
        .expect("read");
    assert_eq!(back, data);
    let part: Vec<i32> = array.retrieve_array_subset(&[2..5, 1..6]).expect("read");
    let all = &data;
    let expected: Vec<i32> = (2..5)
        .flat_map(|r| (1..6).map(move |c| all[(r * cols + c) as usize]))
        .collect();
    assert_eq!(part, expected);

    // A partial update across chunk boundaries (read-modify-write of chunks).
    array
        .store_array_subset(&[3..6, 2..5], vec![-1i32; 9])
        .expect("update");
    let reopened = Array::open(s.zarr_store(&rel).expect("store"), "/").expect("reopen");
    let back: Vec<i32> = reopened
        .retrieve_array_subset(&[0..rows, 0..cols])
        .expect("read");
    for r in 0..rows {
        for c in 0..cols {
            let i = (r * cols + c) as usize;
            let want = if (3..6).contains(&r) && (2..5).contains(&c) {
                -1
            } else {
                data[i]
            };
            assert_eq!(back[i], want, "({r}, {c})");
        }
    }
    // Listing (used by zarrs for hierarchies) sees metadata and all 9 chunks.
    let keys = store.list().expect("list");
    assert!(keys.iter().any(|k| k.as_str() == "zarr.json"), "{keys:?}");
    assert_eq!(
        keys.iter().filter(|k| k.as_str().starts_with("c/")).count(),
        9,
        "{keys:?}"
    );

    s.delete_prefix(&rel).expect("delete array");
    assert!(matches!(
        s.get(&format!("{rel}/zarr.json")),
        Err(StorageError::NotFound(_))
    ));
    assert!(Array::open(s.zarr_store(&rel).expect("store"), "/").is_err());
}

/// The conformance suite every backend must pass.
fn check_storage(s: &Storage) {
    check_unique_name(s);
    let base = s.unique_name("conformance", "");
    check_uris(s, &base);
    check_objects(s, &base);
    check_delete_prefix(s, &base);
    check_zarr(s, &base);
    s.delete_prefix(&base).expect("cleanup");
    assert!(matches!(
        s.get(&format!("{base}/tree2/z")),
        Err(StorageError::NotFound(_))
    ));
}

#[test]
fn local_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("not yet/created");
    let s = Storage::parse(root.to_str().expect("utf-8")).expect("parse");
    let canonical = root.canonicalize().expect("created");
    assert_eq!(s.local_root(), Some(canonical.as_path()));
    assert!(s.root_uri().starts_with("file:///"), "{}", s.root_uri());
    assert!(
        s.root_uri().ends_with("/not%20yet/created"),
        "{}",
        s.root_uri()
    );
    // The file URI forms open the same root.
    for uri in [
        s.root_uri(),
        s.root_uri().replacen("file://", "file://localhost", 1),
    ] {
        let again = Storage::parse(&uri).expect("parse uri");
        assert_eq!(again.local_root(), s.local_root());
        assert_eq!(again.root_uri(), s.root_uri());
    }
    check_storage(&s);
    assert_no_temp_files(&canonical);
}

#[test]
fn s3_conformance() {
    let Ok(uri) = std::env::var("TILED_TEST_S3_URI") else {
        eprintln!("TILED_TEST_S3_URI is not set; skipping the S3 conformance test");
        return;
    };
    let s = Storage::parse(&uri).expect("parse S3 URI");
    assert_eq!(s.local_root(), None);
    let root = s.root_uri();
    assert!(root.starts_with("s3://") && !root.contains('?'), "{root}");
    check_storage(&s);
    // Misuse safety net: a call from a multi-threaded runtime's task works
    // (block_in_place) instead of panicking.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let key = s.unique_name("from-async", ".bin");
    let s2 = s.clone();
    let got = rt.block_on(async move {
        tokio::spawn(async move {
            s2.put(&key, Bytes::from_static(b"async")).expect("put");
            let got = s2.get(&key).expect("get");
            s2.delete_prefix(&key).expect("delete");
            got
        })
        .await
        .expect("task")
    });
    assert_eq!(got, Bytes::from_static(b"async"));
    drop(rt);
    // A clone shares the client; dropping the last one inside an async
    // context must not panic (the runtime shuts down in the background).
    let clone = s.clone();
    drop(s);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async move { drop(clone) });
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            walk(&path, out);
        }
        out.push(path);
    }
}

fn assert_no_temp_files(root: &Path) {
    let mut all = Vec::new();
    walk(root, &mut all);
    let temps: Vec<_> = all
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(TEMP_FILE_PREFIX) || n.starts_with(".tmp"))
        })
        .collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
}

#[test]
fn local_atomic_writes_leave_no_temp_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Storage::parse(dir.path().to_str().expect("utf-8")).expect("parse");
    let root = s.local_root().expect("local").to_path_buf();

    for i in 0..5u8 {
        s.put("a/b/obj", Bytes::from(vec![i; 1000])).expect("put");
    }
    assert_eq!(s.get("a/b/obj").expect("get"), Bytes::from(vec![4u8; 1000]));

    let store = s.zarr_store("arr.zarr").expect("store");
    let array = ArrayBuilder::new(vec![8, 8], vec![2, 2], data_type::int32(), 7i32)
        .build(store.clone(), "/")
        .expect("build");
    array.store_metadata().expect("metadata");
    for round in 0..3 {
        array
            .store_array_subset(&[0..8, 0..8], vec![round; 64])
            .expect("store");
        array
            .store_array_subset(&[1..4, 3..7], vec![-round; 12])
            .expect("partial");
    }
    // Whole-value set and partial set through the raw store API.
    let key = zarrs::storage::StoreKey::new("raw/key").expect("key");
    store.set(&key, Bytes::from_static(b"hello")).expect("set");
    store
        .set_partial_many(
            &key,
            Box::new([(3u64, Bytes::from_static(b"LO world"))].into_iter()),
        )
        .expect("set_partial");
    assert_eq!(
        store.get(&key).expect("get").expect("some"),
        Bytes::from_static(b"helLO world")
    );
    assert_no_temp_files(&root);

    // Files get ordinary permissions (not tempfile's 0o600).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("a/b/obj"))
        .expect("meta")
        .permissions()
        .mode();
    assert_ne!(mode & 0o044, 0, "mode {mode:o}");

    // A leftover temporary file (a write killed before its rename) is
    // invisible to Zarr listings and does not disturb reads or writes.
    let leftover = root
        .join("arr.zarr/c/0")
        .join(format!("{TEMP_FILE_PREFIX}abc"));
    std::fs::write(&leftover, b"torn").expect("leftover");
    let keys = store.list().expect("list");
    assert!(
        keys.iter().all(|k| !k.as_str().contains(TEMP_FILE_PREFIX)),
        "{keys:?}"
    );
    let prefix = zarrs::storage::StorePrefix::new("c/0/").expect("prefix");
    let listing = store.list_dir(&prefix).expect("list_dir");
    assert!(
        listing
            .keys()
            .iter()
            .all(|k| !k.as_str().contains(TEMP_FILE_PREFIX))
    );
    let reopened = Array::open(s.zarr_store("arr.zarr").expect("store"), "/").expect("open");
    let back: Vec<i32> = reopened.retrieve_array_subset(&[0..2, 0..2]).expect("read");
    assert_eq!(back, vec![2, 2, 2, 2]);
}

#[test]
fn parse_errors_and_s3_roots() {
    for bad in [
        "",
        "ftp://host/x",
        "s3://",
        "s3:///prefix",
        "s3://bucket/a/../b",
        "s3://bucket/a//b",
        "s3://bucket?bogus_option=1",
        "s3://bucket?access_key_id=AKIA",
        "s3://bucket?secret_access_key=x",
        "s3://bucket?bucket=other",
        "file://remote-host/x",
        "file:relative",
    ] {
        assert!(
            matches!(Storage::parse(bad), Err(StorageError::BadUri(_))),
            "{bad:?} gave {:?}",
            Storage::parse(bad)
        );
    }
    // Building an S3 storage does not touch the network.
    let s = Storage::parse(
        "s3://bucket/pre/fix/?endpoint=http://127.0.0.1:1&region=us-east-1&allow_http=true",
    )
    .expect("parse");
    assert_eq!(s.root_uri(), "s3://bucket/pre/fix");
    assert_eq!(s.uri("a/b"), "s3://bucket/pre/fix/a/b");
    assert_eq!(
        s.relative("s3://bucket/pre/fix/a/b").as_deref(),
        Some("a/b")
    );
    assert_eq!(s.relative("s3://bucket/pre/fixed/a"), None);
    assert_eq!(s.relative("s3://bucket/pre/a"), None);
    assert_eq!(s.relative("s3://other/pre/fix/a"), None);
    assert!(format!("{s:?}").contains("s3://bucket/pre/fix"));
    let bare = Storage::parse("s3://bucket").expect("parse");
    assert_eq!(bare.root_uri(), "s3://bucket");
    assert_eq!(bare.uri("k"), "s3://bucket/k");
    assert_eq!(bare.relative("s3://bucket/k").as_deref(), Some("k"));
    assert_eq!(bare.relative("s3://bucketx/k"), None);
}
