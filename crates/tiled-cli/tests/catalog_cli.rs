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
    assert!(text.contains("schema version 1"), "{text}");
    let (ok, text) = tiled(&["catalog", "upgrade", &uri]);
    assert!(ok, "{text}");
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
