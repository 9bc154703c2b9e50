//! Registering a directory tree in a catalog, with upstream Tiled's
//! file-to-node mapping:
//! - hidden entries (names starting with `.`) are skipped;
//! - a key is the name with every extension stripped (`a.tar.gz` → `a`),
//!   unless `keep_ext`; a later entry whose key is taken is skipped;
//! - files named `<prefix><digits>.tif|tiff|jpg|jpeg|npy` in one directory
//!   are grouped into one stacked array under the key `<prefix>`
//!   (`_unnamed` when empty), ordered by their number (upstream sorts the
//!   names as text, so `img10` came before `img2`);
//! - subdirectories are containers; files of unknown type are skipped;
//! - a file that cannot be read becomes an empty container whose metadata
//!   says why (spec `error`), so the walk never stops on one bad file.
//!
//! Symbolic links that lead outside the root are not followed unless
//! allowed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tiled_catalog::{Catalog, CatalogError, NewAsset, NewDataSource, NewNode};
use tiled_model::{Spec, StructureFamily};

use crate::{Described, FileFormat, file_uri, mimetype_for};

/// How to walk.
#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    /// Keep file extensions in keys.
    pub keep_ext: bool,
    /// Extension (with its dot, lower case) → mimetype, before the defaults.
    pub mimetypes_by_ext: HashMap<String, String>,
    /// Follow symbolic links that lead outside the root.
    pub follow_external_links: bool,
}

/// What a walk did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WalkReport {
    /// Nodes created (a file container counts each node inside it).
    pub nodes: usize,
    /// Entries not registered (hidden, unknown type, key taken, outside).
    pub skipped: usize,
    /// Files that could not be read (registered as error nodes).
    pub errors: usize,
    /// Nodes removed because their files changed or disappeared.
    pub removed: usize,
}

/// Upstream's `strip_suffixes`: the name without any of its extensions.
pub fn strip_suffixes(name: &str) -> &str {
    // Path::suffixes in Python: every '.' after the first character that is
    // followed by something starts a suffix.
    let body = name.trim_start_matches('.');
    let lead = name.len() - body.len();
    match body.find('.') {
        Some(i) if i + 1 < body.len() => &name[..lead + i],
        _ => name,
    }
}

/// The sequence a file belongs to: `(prefix, number, kind)` for
/// `<prefix><digits>.<ext>` with a sequence extension.
fn sequence_of(name: &str) -> Option<(String, u128, &'static str)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let kind = match ext.to_ascii_lowercase().as_str() {
        "tif" | "tiff" => "tiff",
        "jpg" | "jpeg" => "jpeg",
        "npy" => "npy",
        _ => return None,
    };
    let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let (prefix, number) = stem.split_at(stem.len() - digits);
    let number = number.parse::<u128>().unwrap_or(u128::MAX);
    let prefix = if prefix.is_empty() {
        "_unnamed"
    } else {
        prefix
    };
    Some((prefix.to_string(), number, kind))
}

/// Where a walk puts the nodes it finds: a catalog, or a running server's
/// HTTP API (`tiled register http://...`).
pub trait NodeSink: Send + Sync {
    /// Create `node` under the container at `parent`.
    ///
    /// # Errors
    /// [`CatalogError::Conflict`] for a taken key; others as the sink's.
    fn create_node(&self, parent: &[String], node: &NewNode) -> Result<(), CatalogError>;

    /// Delete the node at `path` and everything below it.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] for a missing node; others as the sink's.
    fn delete_node(&self, path: &[String]) -> Result<(), CatalogError>;
}

impl NodeSink for Catalog {
    fn create_node(&self, parent: &[String], node: &NewNode) -> Result<(), CatalogError> {
        Catalog::create_node(self, parent, node).map(|_| ())
    }

    fn delete_node(&self, path: &[String]) -> Result<(), CatalogError> {
        Catalog::delete_node(self, path)
    }
}

/// Registers directory trees in a catalog.
pub struct Walker {
    catalog: Arc<dyn NodeSink>,
    formats: HashMap<String, Arc<dyn FileFormat>>,
    root: PathBuf,
    options: WalkOptions,
    /// What is registered, by parent container then key: the fingerprint
    /// of the files behind a file node, `None` for a directory's container.
    /// A later pass (`--watch`) compares against it, one directory at a
    /// time, so a pass costs a lookup per directory, not a scan of all.
    known: std::sync::Mutex<HashMap<Vec<String>, Children>>,
}

/// A directory's registered children: key → fingerprint (`None` for a
/// subdirectory).
type Children = HashMap<String, Option<Fingerprint>>;

/// Enough to notice that files changed: count, total size, newest mtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    files: usize,
    bytes: u64,
    newest: Option<std::time::SystemTime>,
}

fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    let mut f = Fingerprint {
        files: paths.len(),
        bytes: 0,
        newest: None,
    };
    for p in paths {
        // A Zarr store changes inside: look one level down too.
        let mut metas = vec![std::fs::metadata(p).ok()];
        if p.is_dir()
            && let Ok(entries) = std::fs::read_dir(p)
        {
            metas.extend(entries.filter_map(Result::ok).map(|e| e.metadata().ok()));
        }
        for m in metas.into_iter().flatten() {
            f.bytes += m.len();
            f.newest = f.newest.max(m.modified().ok());
        }
    }
    f
}

/// One thing to register in a directory.
enum Item {
    File {
        key: String,
        path: PathBuf,
        mimetype: String,
    },
    Sequence {
        key: String,
        paths: Vec<PathBuf>,
        mimetype: String,
    },
    Directory {
        key: String,
        path: PathBuf,
    },
}

impl Walker {
    /// A walker of `root` (which must exist) into `catalog`.
    ///
    /// # Errors
    /// I/O errors resolving `root`.
    pub fn new(
        catalog: Arc<dyn NodeSink>,
        formats: &[Arc<dyn FileFormat>],
        root: &Path,
        options: WalkOptions,
    ) -> std::io::Result<Self> {
        Ok(Walker {
            catalog,
            formats: formats
                .iter()
                .map(|f| (f.mimetype().to_string(), f.clone()))
                .collect(),
            root: root.canonicalize()?,
            options,
            known: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Register everything under the root below the catalog container at
    /// `parent` (which must exist).
    ///
    /// # Errors
    /// Catalog errors (a file that cannot be read is not an error).
    pub fn register(&self, parent: &[String]) -> Result<WalkReport, CatalogError> {
        let mut report = WalkReport::default();
        self.walk_dir(parent, &self.root.clone(), &mut report)?;
        Ok(report)
    }

    /// Bring the catalog in line with the files again: register new files,
    /// re-register changed ones, delete the nodes of removed ones. Cheap
    /// when nothing changed (a `stat` per file). `--watch` calls it every
    /// second.
    ///
    /// # Errors
    /// Catalog errors.
    pub fn sync(&self, parent: &[String]) -> Result<WalkReport, CatalogError> {
        self.register(parent)
    }

    fn known_children(&self, parent: &[String]) -> Children {
        self.known
            .lock()
            .ok()
            .and_then(|k| k.get(parent).cloned())
            .unwrap_or_default()
    }

    /// Forget the node at `path` and every directory below it.
    fn forget(&self, path: &[String]) {
        let Some((key, parent)) = path.split_last() else {
            return;
        };
        if let Ok(mut known) = self.known.lock() {
            if let Some(children) = known.get_mut(parent) {
                children.remove(key);
            }
            known.retain(|dir, _| !dir.starts_with(path));
        }
    }

    fn remember(&self, path: &[String], f: Option<Fingerprint>) {
        let Some((key, parent)) = path.split_last() else {
            return;
        };
        if let Ok(mut known) = self.known.lock() {
            known
                .entry(parent.to_vec())
                .or_default()
                .insert(key.clone(), f);
        }
    }

    fn known_is_dir(&self, path: &[String]) -> bool {
        let Some((key, parent)) = path.split_last() else {
            return false;
        };
        self.known
            .lock()
            .map(|k| matches!(k.get(parent).and_then(|c| c.get(key)), Some(None)))
            .unwrap_or(false)
    }

    fn remove(&self, path: &[String], report: &mut WalkReport) -> Result<(), CatalogError> {
        match self.catalog.delete_node(path) {
            Ok(()) | Err(CatalogError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.forget(path);
        report.removed += 1;
        Ok(())
    }

    fn inside(&self, path: &Path) -> Option<PathBuf> {
        let real = path.canonicalize().ok()?;
        (self.options.follow_external_links || real.starts_with(&self.root)).then_some(real)
    }

    fn items(&self, dir: &Path, report: &mut WalkReport) -> Vec<Item> {
        let mut names: Vec<(String, PathBuf)> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                .filter(|(name, _)| !name.starts_with('.'))
                .collect(),
            Err(e) => {
                tracing::warn!("cannot list {}: {e}", dir.display());
                report.errors += 1;
                return Vec::new();
            }
        };
        names.sort();
        let key_of = |name: &str| -> String {
            if self.options.keep_ext {
                name.to_string()
            } else {
                strip_suffixes(name).to_string()
            }
        };
        let mut items = Vec::new();
        let mut sequences: BTreeMap<(String, &'static str), Vec<(u128, PathBuf)>> = BTreeMap::new();
        for (name, path) in names {
            let Some(real) = self.inside(&path) else {
                tracing::warn!(
                    "skipping {}: it leads outside the served directory",
                    path.display()
                );
                report.skipped += 1;
                continue;
            };
            // A directory with a type of its own (a Zarr store) is one item.
            let dir_type = real
                .is_dir()
                .then(|| mimetype_for(&path, &self.options.mimetypes_by_ext))
                .flatten()
                .filter(|m| self.formats.contains_key(m));
            if let Some(mimetype) = dir_type {
                items.push(Item::File {
                    key: key_of(&name),
                    path: real,
                    mimetype,
                });
                continue;
            }
            if real.is_dir() {
                items.push(Item::Directory {
                    key: key_of(&name),
                    path: real,
                });
                continue;
            }
            if let Some((prefix, number, kind)) = sequence_of(&name) {
                sequences
                    .entry((prefix, kind))
                    .or_default()
                    .push((number, real));
                continue;
            }
            match mimetype_for(&path, &self.options.mimetypes_by_ext) {
                Some(mimetype) if self.formats.contains_key(&mimetype) => items.push(Item::File {
                    key: key_of(&name),
                    path: real,
                    mimetype,
                }),
                _ => {
                    tracing::info!("skipping {}: no reader for its type", path.display());
                    report.skipped += 1;
                }
            }
        }
        for ((prefix, kind), mut files) in sequences {
            files.sort();
            items.push(Item::Sequence {
                key: key_of(&prefix),
                paths: files.into_iter().map(|(_, p)| p).collect(),
                mimetype: format!(
                    "multipart/related;type={}",
                    match kind {
                        "tiff" => "image/tiff",
                        "jpeg" => "image/jpeg",
                        _ => "application/x-npy",
                    }
                ),
            });
        }
        items
    }

    fn walk_dir(
        &self,
        parent: &[String],
        dir: &Path,
        report: &mut WalkReport,
    ) -> Result<(), CatalogError> {
        let all = self.items(dir, report);
        let known = self.known_children(parent);
        // Keep the first item of each key (as upstream).
        let mut taken = HashSet::new();
        let mut items = Vec::new();
        for item in all {
            let key = item.key().to_string();
            if tiled_catalog::validate_node_key(&key).is_err() || !taken.insert(key.clone()) {
                tracing::warn!(
                    "skipping {key:?} in {}: the key is taken or invalid",
                    dir.display()
                );
                report.skipped += 1;
                continue;
            }
            items.push(item);
        }
        // Removed files and directories.
        for key in known.keys().filter(|k| !taken.contains(*k)) {
            let mut path = parent.to_vec();
            path.push(key.clone());
            tracing::info!("{path:?}: its files are gone; removing it");
            self.remove(&path, report)?;
        }
        // New and changed files; directories are walked below.
        let mut fresh = Vec::new();
        for item in &items {
            let mut path = parent.to_vec();
            path.push(item.key().to_string());
            let now = item.fingerprint();
            match known.get(item.key()) {
                Some(before) if *before == now => continue,
                Some(_) => {
                    tracing::info!("{path:?}: its files changed; registering it again");
                    self.remove(&path, report)?;
                }
                None => {}
            }
            fresh.push(item);
        }
        // Describe files in parallel: headers only, but many files.
        let described = describe_all(&fresh, &self.formats);
        for (item, described) in fresh.iter().zip(described) {
            let key = item.key();
            let mut path = parent.to_vec();
            path.push(key.to_string());
            let created = match item {
                Item::Directory { .. } => {
                    let node = NewNode {
                        key: key.to_string(),
                        structure_family: StructureFamily::Container,
                        structure: None,
                        metadata: Default::default(),
                        specs: vec![],
                        access_blob: json!({}),
                        data_sources: vec![],
                    };
                    self.create(parent, &node, report)?
                }
                Item::File {
                    path: f, mimetype, ..
                } => {
                    let files = std::slice::from_ref(f);
                    self.register_described(parent, key, described, mimetype, files, report)?
                }
                Item::Sequence {
                    paths, mimetype, ..
                } => self.register_described(parent, key, described, mimetype, paths, report)?,
            };
            if created {
                self.remember(&path, item.fingerprint());
            }
        }
        for item in &items {
            if let Item::Directory { key, path: d } = item {
                let mut path = parent.to_vec();
                path.push(key.clone());
                if self.known_is_dir(&path) {
                    self.walk_dir(&path, d, report)?;
                }
            }
        }
        Ok(())
    }

    fn create(
        &self,
        parent: &[String],
        node: &NewNode,
        report: &mut WalkReport,
    ) -> Result<bool, CatalogError> {
        match self.catalog.create_node(parent, node) {
            Ok(_) => {
                report.nodes += 1;
                Ok(true)
            }
            Err(CatalogError::Conflict(_)) => {
                tracing::warn!("skipping {:?} under {parent:?}: the key is taken", node.key);
                report.skipped += 1;
                Ok(false)
            }
            // A server refusing one node (e.g. a file it cannot read) does
            // not stop the walk.
            Err(CatalogError::BadRequest(m)) => {
                tracing::warn!("skipping {:?} under {parent:?}: {m}", node.key);
                report.errors += 1;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn register_described(
        &self,
        parent: &[String],
        key: &str,
        described: Description,
        mimetype: &str,
        files: &[PathBuf],
        report: &mut WalkReport,
    ) -> Result<bool, CatalogError> {
        let described = match described {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::warn!("{e}");
                report.errors += 1;
                let node = error_node(key, mimetype, &e.to_string(), files);
                return self.create(parent, &node, report);
            }
            None => return Ok(false),
        };
        self.create_tree(parent, key, &described, mimetype, files, report)
    }

    fn create_tree(
        &self,
        parent: &[String],
        key: &str,
        d: &Described,
        mimetype: &str,
        files: &[PathBuf],
        report: &mut WalkReport,
    ) -> Result<bool, CatalogError> {
        let data_sources = match &d.parameters {
            Some(parameters) => vec![NewDataSource {
                mimetype: mimetype.to_string(),
                parameters: parameters.clone(),
                properties: json!({}),
                management: "external".into(),
                assets: files
                    .iter()
                    .enumerate()
                    .map(|(i, f)| NewAsset {
                        data_uri: file_uri(f),
                        is_directory: f.is_dir(),
                        parameter: Some(
                            if files.len() > 1 {
                                "data_uris"
                            } else {
                                "data_uri"
                            }
                            .into(),
                        ),
                        num: (files.len() > 1).then_some(i as i64),
                    })
                    .collect(),
            }],
            None => vec![],
        };
        let node = NewNode {
            key: key.to_string(),
            structure_family: d.family,
            structure: d.structure.clone(),
            metadata: d.metadata.clone(),
            specs: d.specs.clone(),
            access_blob: json!({}),
            data_sources,
        };
        if !self.create(parent, &node, report)? {
            return Ok(false);
        }
        if d.children.is_empty() {
            return Ok(true);
        }
        let mut path = parent.to_vec();
        path.push(key.to_string());
        for (child_key, child) in &d.children {
            if tiled_catalog::validate_node_key(child_key).is_err() {
                tracing::warn!(
                    "skipping {child_key:?} in {}: not a valid key",
                    files[0].display()
                );
                report.skipped += 1;
                continue;
            }
            self.create_tree(&path, child_key, child, mimetype, files, report)?;
        }
        Ok(true)
    }
}

impl Item {
    fn key(&self) -> &str {
        match self {
            Item::File { key, .. } | Item::Sequence { key, .. } | Item::Directory { key, .. } => {
                key
            }
        }
    }

    /// `None` for directories (their content is walked, not fingerprinted).
    fn fingerprint(&self) -> Option<Fingerprint> {
        match self {
            Item::File { path, .. } => Some(fingerprint(std::slice::from_ref(path))),
            Item::Sequence { paths, .. } => Some(fingerprint(paths)),
            Item::Directory { .. } => None,
        }
    }
}

/// A node standing for a file that could not be read.
fn error_node(key: &str, mimetype: &str, message: &str, files: &[PathBuf]) -> NewNode {
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "error".into(),
        json!({
            "message": message,
            "mimetype": mimetype,
            "files": files.iter().map(|f| f.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        }),
    );
    NewNode {
        key: key.to_string(),
        structure_family: StructureFamily::Container,
        structure: None,
        metadata,
        specs: vec![Spec::new("error")],
        access_blob: Value::Object(Default::default()),
        data_sources: vec![],
    }
}

/// Describe every file and sequence of `items`, several at a time.
/// A file's description, or why it has none; `None` for directories.
type Description = Option<Result<Described, crate::FileError>>;

fn describe_all(
    items: &[&Item],
    formats: &HashMap<String, Arc<dyn FileFormat>>,
) -> Vec<Description> {
    let describe = |item: &Item| -> Description {
        match item {
            Item::Directory { .. } => None,
            Item::File { path, mimetype, .. } => Some(formats.get(mimetype)?.describe(path)),
            Item::Sequence {
                paths, mimetype, ..
            } => {
                let format = formats.get(mimetype)?;
                Some(crate::arrays::describe_sequence(format.as_ref(), paths))
            }
        }
    };
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    if items.len() < 2 || workers < 2 {
        return items.iter().map(|i| describe(i)).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Description>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i).copied() else {
                        break;
                    };
                    let r = describe(item);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().ok().flatten().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_sequences_as_upstream() {
        assert_eq!(strip_suffixes("a.tif"), "a");
        assert_eq!(strip_suffixes("thing.tar.gz"), "thing");
        assert_eq!(strip_suffixes("noext"), "noext");
        assert_eq!(strip_suffixes("trailing."), "trailing.");
        assert_eq!(
            sequence_of("img_0010.tif"),
            Some(("img_".into(), 10, "tiff"))
        );
        assert_eq!(sequence_of("7.TIFF"), Some(("_unnamed".into(), 7, "tiff")));
        assert_eq!(sequence_of("frame2.npy"), Some(("frame".into(), 2, "npy")));
        assert_eq!(sequence_of("image.tif"), None);
        assert_eq!(sequence_of("data1.csv"), None);
    }
}
