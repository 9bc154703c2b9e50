//! `tiled catalog init|upgrade|index` and `tiled serve catalog` start-up
//! checks, run as the real binary.

use std::process::Command;

fn tiled(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tiled"))
        .args(args)
        .output()
        .expect("run tiled");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn init_upgrade_index_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let uri = format!("sqlite:///{}", db.display());
    // Serving an empty database without --init is refused with advice.
    let (ok, text) = tiled(&["serve", "catalog", &uri, "--port", "0"]);
    assert!(!ok);
    assert!(text.contains("--init"), "{text}");
    let (ok, text) = tiled(&["catalog", "init", &uri]);
    assert!(ok, "{text}");
    let latest = tiled_catalog::schema::LATEST;
    assert!(text.contains(&format!("schema version {latest}")), "{text}");
    let (ok, text) = tiled(&["catalog", "upgrade", &uri]);
    assert!(ok, "{text}");
    assert!(text.contains("up to date"), "{text}");
    let (ok, text) = tiled(&["catalog", "index", &uri, "start.time"]);
    assert!(ok, "{text}");
    assert!(text.contains("CREATE INDEX"), "{text}");
    let (ok, text) = tiled(&["catalog", "index", &uri, "bad'key", "--type", "text"]);
    assert!(!ok);
    assert!(text.contains("invalid metadata key"), "{text}");
    let (ok, text) = tiled(&["catalog", "init", "mysql://nope"]);
    assert!(!ok);
    assert!(text.contains("unsupported catalog scheme"), "{text}");
}

#[test]
fn an_old_catalog_is_refused_until_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let uri = format!("sqlite:///{}", db.display());
    let pool = tiled_catalog::Catalog::connect(&tiled_catalog::CatalogUri::Sqlite(db)).unwrap();
    tiled_catalog::schema::upgrade_to(&pool, 1).unwrap();
    drop(pool);
    let (ok, text) = tiled(&["serve", "catalog", &uri, "--port", "0"]);
    assert!(!ok);
    assert!(text.contains("tiled catalog upgrade"), "{text}");
    let (ok, text) = tiled(&["catalog", "upgrade", &uri]);
    assert!(ok, "{text}");
    let latest = tiled_catalog::schema::LATEST;
    assert!(
        text.contains(&format!("from schema version 1 to {latest}")),
        "{text}"
    );
    let (ok, text) = tiled(&["catalog", "upgrade", &uri]);
    assert!(ok && text.contains("up to date"), "{text}");
}
