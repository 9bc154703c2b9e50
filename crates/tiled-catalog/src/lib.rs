//! The SQL catalog: every node's metadata, structure, specs, access blob and
//! data sources in SQLite (embedded, the default) or PostgreSQL, so that
//! metadata and search requests never open a data file.
//!
//! Module map:
//! - [`uri`]: `sqlite:///...` / `postgresql://...` as upstream writes them.
//! - [`db`]: connections, the pool, parameters and rows.
//! - [`schema`]: tables, indexes and versioned migrations per dialect.
//! - [`sql`]: Tiled's queries and sorts translated to SQL per dialect.
//! - [`adapter`]: catalog nodes as `tiled_adapters` containers, arrays and
//!   tables; data sources open lazily through registered [`Opener`]s.
//!
//! The catalog is synchronous (like the adapter traits); the server calls
//! it from blocking threads.

pub mod access_tags;
pub mod adapter;
pub mod db;
pub mod load;
pub mod schema;
pub mod sql;
pub mod table_storage;
pub mod uri;
pub mod writer;
pub mod zarr_storage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use tiled_adapters::{AdapterError, NodeData};
use tiled_model::{Query, Spec, StructureFamily};

pub use access_tags::AccessTagRows;
pub use adapter::{CatalogContainer, Opener};
use db::{Connection, Dialect, Param, Pool};
pub use uri::CatalogUri;

/// What can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    BadUri(String),
    /// The caller's mistake (a bad key, a duplicate, a missing parent).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A node already exists at this key.
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(String),
    #[error(
        "the catalog's schema is version {found}, newer than this build knows ({known}); upgrade tiled"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error(
        "the catalog's schema is version {found}; run `tiled catalog upgrade` to reach {latest}"
    )]
    OldSchema { found: i64, latest: i64 },
    #[error("{0}")]
    Internal(String),
}

impl From<CatalogError> for AdapterError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::BadRequest(m) => AdapterError::BadRequest(m),
            CatalogError::NotFound(m) => AdapterError::NotFound(m),
            CatalogError::Conflict(m) => AdapterError::Conflict(m),
            other => AdapterError::Internal(other.to_string()),
        }
    }
}

/// A data source to attach to a new node.
#[derive(Clone, Debug)]
pub struct NewDataSource {
    pub mimetype: String,
    pub parameters: Value,
    /// Free-form properties of the source (the wire's `properties`).
    pub properties: Value,
    pub management: String,
    /// Asset URIs with the parameter name they fill and their position.
    pub assets: Vec<NewAsset>,
}

/// One asset of a data source.
#[derive(Clone, Debug)]
pub struct NewAsset {
    pub data_uri: String,
    pub is_directory: bool,
    pub parameter: Option<String>,
    pub num: Option<i64>,
}

/// A node to create.
#[derive(Clone, Debug)]
pub struct NewNode {
    pub key: String,
    pub structure_family: StructureFamily,
    /// The structure's JSON (arrays, tables); `None` for containers.
    pub structure: Option<Value>,
    pub metadata: Map<String, Value>,
    pub specs: Vec<Spec>,
    pub access_blob: Value,
    pub data_sources: Vec<NewDataSource>,
}

/// `file://localhost/abs/path` for a path (percent-encoding the few
/// characters a URI cannot carry).
pub fn file_uri(path: &Path) -> String {
    let mut out = String::from("file://localhost");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'%' | b' ' | b'#' | b'?' => out.push_str(&format!("%{b:02X}")),
            _ => out.push(b as char),
        }
    }
    out
}

/// The path of a `file://` URI made by [`file_uri`].
pub fn path_of_uri(uri: &str) -> Option<PathBuf> {
    let rest = uri
        .strip_prefix("file://localhost")
        .or_else(|| uri.strip_prefix("file://"))?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(PathBuf::from(String::from_utf8(out).ok()?))
}

/// A data source as stored.
#[derive(Clone, Debug)]
pub struct DataSource {
    pub id: i64,
    pub mimetype: String,
    pub parameters: Value,
    pub properties: Value,
    pub management: String,
    pub structure: Option<Value>,
    /// In order of `parameter`, then `num`.
    pub assets: Vec<Asset>,
}

/// One asset of a stored data source, as the association places it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    pub id: i64,
    pub data_uri: String,
    pub is_directory: bool,
    pub size: Option<i64>,
    /// The adapter parameter the asset fills (`data_uri`, `data_uris`).
    pub parameter: Option<String>,
    /// Its position among the assets of that parameter.
    pub num: Option<i64>,
}

impl DataSource {
    /// The wire form (`include_data_sources=true`).
    pub fn to_wire(&self, family: StructureFamily) -> Value {
        serde_json::json!({
            "id": self.id,
            "structure_family": family.as_str(),
            "structure": self.structure,
            "mimetype": self.mimetype,
            "parameters": self.parameters,
            "properties": self.properties,
            "assets": self.assets.iter().map(|a| serde_json::json!({
                "data_uri": a.data_uri,
                "is_directory": a.is_directory,
                "size": a.size,
                "parameter": a.parameter,
                "num": a.num,
                "id": a.id,
            })).collect::<Vec<_>>(),
            "management": self.management,
        })
    }
}

/// An earlier state of a node's metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    pub revision_number: i64,
    pub metadata: Value,
    pub specs: Value,
    pub access_blob: Value,
    pub time_updated: String,
}

/// Filtered counts up to this are exact on SQLite, whose covering indexes
/// count a hundred thousand entries in milliseconds (beyond it too).
pub const EXACT_COUNT_LIMIT: i64 = 100_000;

/// Filtered counts up to this are exact on PostgreSQL; beyond it they are
/// the planner's estimate, as upstream does. (PostgreSQL cannot count from
/// an expression index alone: every candidate row is read, so an exact
/// count of 35,000 matches of a 1M-node container costs ~80 ms.)
pub const POSTGRES_EXACT_COUNT_LIMIT: i64 = 1_000;

/// A connected catalog.
pub struct Catalog {
    pub(crate) pool: Pool,
    pub(crate) openers: HashMap<String, Arc<dyn Opener>>,
    /// Where the data this server writes lives (to read it back).
    writable: Option<tiled_storage::Storage>,
    /// The metadata indexes that exist (see [`sql::Sql::indexes`]).
    indexes: std::sync::RwLock<Arc<std::collections::HashSet<String>>>,
    /// Keeps a `--temp` catalog's directory alive as long as the catalog.
    _temp: Option<tempfile::TempDir>,
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn json_text(v: &impl serde::Serialize) -> Result<String, CatalogError> {
    serde_json::to_string(v).map_err(|e| CatalogError::Internal(e.to_string()))
}

impl Catalog {
    /// Connect to `uri`. With `init`, create (or upgrade) the schema; without
    /// it, a database with no catalog or an older schema is an error.
    ///
    /// # Errors
    /// Connection and schema errors.
    pub fn open(uri: &CatalogUri, init: bool) -> Result<Catalog, CatalogError> {
        let pool = Self::connect(uri)?;
        let found = schema::version(&pool)?;
        if init {
            schema::upgrade(&pool)?;
        } else if found == 0 {
            return Err(CatalogError::OldSchema {
                found,
                latest: schema::LATEST,
            });
        } else if found > schema::LATEST {
            return Err(CatalogError::NewerSchema {
                found,
                known: schema::LATEST,
            });
        } else if found < schema::LATEST {
            return Err(CatalogError::OldSchema {
                found,
                latest: schema::LATEST,
            });
        }
        let catalog = Catalog {
            pool,
            openers: HashMap::new(),
            writable: None,
            indexes: Default::default(),
            _temp: None,
        };
        catalog.ensure_root()?;
        catalog.load_index_names()?;
        Ok(catalog)
    }

    /// Bring the database at `uri` to the newest schema (creating it if
    /// absent). Returns the version found and the versions applied.
    ///
    /// # Errors
    /// [`CatalogError::NewerSchema`] for a database newer than this build,
    /// before anything is changed; connection and migration errors (a
    /// failed migration is rolled back).
    pub fn migrate(uri: &CatalogUri) -> Result<(i64, Vec<i64>), CatalogError> {
        let pool = Self::connect(uri)?;
        let found = schema::version(&pool)?;
        Ok((found, schema::upgrade(&pool)?))
    }

    /// A connection pool to `uri`, without looking at the schema.
    ///
    /// # Errors
    /// [`CatalogError::BadUri`] if a SQLite directory cannot be created.
    pub fn connect(uri: &CatalogUri) -> Result<Pool, CatalogError> {
        Ok(match uri {
            CatalogUri::Sqlite(path) => {
                let path = path.clone();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        CatalogError::BadUri(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                Pool::new(
                    Dialect::Sqlite,
                    8,
                    Box::new(move || {
                        Ok(Box::new(db::SqliteConnection::open(&path)?) as Box<dyn Connection>)
                    }),
                )
            }
            CatalogUri::Postgres(conn) => {
                let conn = conn.clone();
                Pool::new(
                    Dialect::Postgres,
                    16,
                    Box::new(move || {
                        Ok(Box::new(db::PostgresConnection::connect(&conn)?)
                            as Box<dyn Connection>)
                    }),
                )
            }
        })
    }

    /// A new SQLite catalog in a temporary directory, removed when the
    /// catalog is dropped.
    ///
    /// # Errors
    /// I/O and schema errors.
    pub fn temporary() -> Result<Catalog, CatalogError> {
        let dir = tempfile::Builder::new()
            .prefix("tiled-catalog-")
            .tempdir()
            .map_err(|e| CatalogError::Internal(e.to_string()))?;
        let uri = CatalogUri::Sqlite(dir.path().join("catalog.db"));
        let mut c = Catalog::open(&uri, true)?;
        c._temp = Some(dir);
        Ok(c)
    }

    /// The directory of a [`Catalog::temporary`] catalog (removed with it).
    pub fn temporary_dir(&self) -> Option<&Path> {
        self._temp.as_ref().map(tempfile::TempDir::path)
    }

    /// The SQL dialect.
    pub fn dialect(&self) -> Dialect {
        self.pool.dialect
    }

    /// A query builder for this catalog (it knows the metadata indexes).
    pub fn sql(&self) -> sql::Sql {
        let indexes = self.indexes.read().map(|i| i.clone()).unwrap_or_default();
        sql::Sql::with_indexes(self.dialect(), indexes)
    }

    fn load_index_names(&self) -> Result<(), CatalogError> {
        let mut c = self.pool.get()?;
        let rows = match self.dialect() {
            Dialect::Sqlite => c.rows(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'nodes_md_%'",
                &[],
            )?,
            Dialect::Postgres => c.rows(
                "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename = 'nodes' AND indexname LIKE 'nodes_md_%'",
                &[],
            )?,
        };
        let names = rows
            .iter()
            .map(|r| r.text(0).map(str::to_string))
            .collect::<Result<std::collections::HashSet<_>, _>>()?;
        if let Ok(mut i) = self.indexes.write() {
            *i = Arc::new(names);
        }
        Ok(())
    }

    /// `VACUUM (ANALYZE)` (PostgreSQL) or `ANALYZE` (SQLite) after bulk
    /// loads, so plans and index-only scans see the new rows.
    ///
    /// # Errors
    /// Database errors.
    pub fn vacuum(&self) -> Result<(), CatalogError> {
        let mut c = self.pool.get()?;
        match self.dialect() {
            Dialect::Sqlite => c.batch("ANALYZE"),
            Dialect::Postgres => c.batch("VACUUM (ANALYZE) nodes"),
        }
    }

    /// Read written data (management `writable`) from `storage`.
    pub fn set_writable_storage(&mut self, storage: tiled_storage::Storage) {
        self.writable = Some(storage);
    }

    /// `(idle, open, max)` database connections of this catalog's pool.
    pub fn pool_stats(&self) -> (usize, usize, usize) {
        self.pool.stats()
    }

    /// Whether data sources of `mimetype` can be opened here.
    pub fn can_open(&self, mimetype: &str) -> bool {
        self.openers.contains_key(mimetype)
    }

    /// Register how data sources of `mimetype` are opened.
    pub fn register_opener(&mut self, mimetype: &str, opener: Arc<dyn Opener>) {
        self.openers.insert(mimetype.to_string(), opener);
    }

    /// Placeholder `n` for this dialect (`?n` or `$n`) with a text cast on
    /// PostgreSQL for the common case of binding text or integers.
    fn p(&self, n: usize, cast: &str) -> String {
        match self.dialect() {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}::text{cast}"),
        }
    }

    /// `column::text` on PostgreSQL (JSONB and timestamps come back as
    /// text), the bare column on SQLite.
    fn t(&self, column: &str) -> String {
        match self.dialect() {
            Dialect::Sqlite => column.to_string(),
            Dialect::Postgres => format!("{column}::text"),
        }
    }

    fn ensure_root(&self) -> Result<(), CatalogError> {
        let mut c = self.pool.get()?;
        let found = c.rows("SELECT count(*) FROM nodes WHERE path = ''", &[])?;
        if found.first().map(|r| r.int(0)).transpose()?.unwrap_or(0) > 0 {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO nodes (parent, key, path, structure_family, metadata, specs, access_blob, time_created, time_updated) \
             VALUES (NULL, '', '', 'container', {m}, {s}, {a}, {t}, {t2}) ON CONFLICT (path) DO NOTHING",
            m = self.p(1, "::jsonb"),
            s = self.p(2, "::jsonb"),
            a = self.p(3, "::jsonb"),
            t = self.p(4, "::timestamptz"),
            t2 = self.p(4, "::timestamptz"),
        );
        let ts = now();
        c.execute(
            &sql,
            &[
                Param::Text("{}".into()),
                Param::Text("[]".into()),
                Param::Text("{}".into()),
                Param::Text(ts),
            ],
        )?;
        Ok(())
    }

    /// The id of the node at `path` (keys from the root), if any.
    ///
    /// # Errors
    /// Database errors.
    pub fn node_id(&self, path: &[String]) -> Result<Option<i64>, CatalogError> {
        let mut c = self.pool.get()?;
        let rows = c.rows(
            &format!("SELECT id FROM nodes WHERE path = {}", self.p(1, "")),
            &[Param::Text(path.join("/"))],
        )?;
        rows.first().map(|r| r.int(0)).transpose()
    }

    /// The assets of writable data sources at `path` and below it: what
    /// the server itself wrote and must remove with the nodes.
    ///
    /// # Errors
    /// Database errors.
    pub fn writable_assets_under(&self, path: &[String]) -> Result<Vec<String>, CatalogError> {
        let mut c = self.pool.get()?;
        let rows = c.rows(
            &format!(
                "SELECT a.data_uri FROM nodes n \
                 JOIN data_sources d ON d.node_id = n.id \
                 JOIN data_source_asset_association x ON x.data_source_id = d.id \
                 JOIN assets a ON a.id = x.asset_id \
                 WHERE d.management = 'writable' AND (n.path = {p} OR substr(n.path, 1, length({q})) = {q})",
                p = self.p(1, ""),
                q = self.p(2, ""),
            ),
            &[
                Param::Text(path.join("/")),
                Param::Text(format!("{}/", path.join("/"))),
            ],
        )?;
        rows.iter().map(|r| Ok(r.text(0)?.to_string())).collect()
    }

    /// Whether a node with this id exists.
    ///
    /// # Errors
    /// Database errors.
    pub fn node_exists(&self, id: i64) -> Result<bool, CatalogError> {
        let mut c = self.pool.get()?;
        let rows = c.rows(
            &format!("SELECT 1 FROM nodes WHERE id = {}", self.p(1, "::bigint")),
            &[Param::Int(id)],
        )?;
        Ok(!rows.is_empty())
    }

    /// Create a node under the container at `parent` (keys from the root).
    /// Returns its id.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] if the parent is missing or not a
    /// container; [`CatalogError::Conflict`] if the key is taken;
    /// [`CatalogError::BadRequest`] for a bad key.
    pub fn create_node(&self, parent: &[String], node: &NewNode) -> Result<i64, CatalogError> {
        let ids = self.create_nodes(parent, std::slice::from_ref(node))?;
        ids.first()
            .copied()
            .ok_or_else(|| CatalogError::Internal("no id for the new node".into()))
    }

    /// Create many nodes under one parent in one transaction (bulk loads):
    /// the parent is looked up once and its child count updated once.
    ///
    /// # Errors
    /// As [`Catalog::create_node`]; nothing is created if one fails.
    pub fn create_nodes(
        &self,
        parent: &[String],
        nodes: &[NewNode],
    ) -> Result<Vec<i64>, CatalogError> {
        for n in nodes {
            validate_node_key(&n.key)?;
        }
        self.pool.transaction(|c| {
            let parent_path = parent.join("/");
            let rows = c.query(
                &format!(
                    "SELECT id, structure_family FROM nodes WHERE path = {}",
                    self.p(1, "")
                ),
                &[Param::Text(parent_path.clone())],
            )?;
            let Some(row) = rows.first() else {
                return Err(CatalogError::NotFound(format!(
                    "No such container: {parent_path:?}"
                )));
            };
            let parent_id = row.int(0)?;
            if row.text(1)? != "container" {
                return Err(CatalogError::NotFound(format!(
                    "{parent_path:?} is not a container"
                )));
            }
            let ts = now();
            let mut ids = Vec::with_capacity(nodes.len());
            for node in nodes {
                let path = if parent_path.is_empty() {
                    node.key.clone()
                } else {
                    format!("{parent_path}/{}", node.key)
                };
                ids.push(self.insert_node(c, parent_id, &path, node, &ts)?);
            }
            c.execute(
                &format!(
                    "UPDATE nodes SET child_count = child_count + {} WHERE id = {}",
                    self.p(1, "::bigint"),
                    self.p(2, "::bigint")
                ),
                &[Param::Int(nodes.len() as i64), Param::Int(parent_id)],
            )?;
            Ok(ids)
        })
    }

    fn insert_node(
        &self,
        c: &mut dyn Connection,
        parent_id: i64,
        path: &str,
        node: &NewNode,
        ts: &str,
    ) -> Result<i64, CatalogError> {
        let structure_id = match &node.structure {
            Some(s) => Some(self.put_structure(c, s)?),
            None => None,
        };
        let sql = format!(
            "INSERT INTO nodes (parent, key, path, structure_family, structure_id, metadata, specs, access_blob, time_created, time_updated) \
             VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}) RETURNING id",
            self.p(1, "::bigint"),
            self.p(2, ""),
            self.p(3, ""),
            self.p(4, ""),
            self.p(5, ""),
            self.p(6, "::jsonb"),
            self.p(7, "::jsonb"),
            self.p(8, "::jsonb"),
            self.p(9, "::timestamptz"),
            self.p(9, "::timestamptz"),
        );
        let rows = c
            .query(
                &sql,
                &[
                    Param::Int(parent_id),
                    Param::Text(node.key.clone()),
                    Param::Text(path.to_string()),
                    Param::Text(node.structure_family.as_str().to_string()),
                    structure_id.map_or(Param::Null, Param::Text),
                    Param::Text(json_text(&node.metadata)?),
                    Param::Text(json_text(&node.specs)?),
                    Param::Text(json_text(&node.access_blob)?),
                    Param::Text(ts.to_string()),
                ],
            )
            .map_err(|e| match e {
                // The unique constraints are the duplicate check: no race
                // between a check and the insert.
                CatalogError::Database(m)
                    if m.contains("UNIQUE constraint failed")
                        || m.contains("duplicate key value") =>
                {
                    CatalogError::Conflict(format!("A node already exists at {path:?}"))
                }
                other => other,
            })?;
        let id = rows
            .first()
            .ok_or_else(|| CatalogError::Internal("INSERT returned no id".into()))?
            .int(0)?;
        if self.dialect() == Dialect::Sqlite {
            c.execute(
                "INSERT INTO nodes_fts (rowid, text) VALUES (?1, ?2)",
                &[
                    Param::Int(id),
                    Param::Text(sql::strings_of(&Value::Object(node.metadata.clone()))),
                ],
            )?;
        }
        for ds in &node.data_sources {
            self.put_data_source(c, id, node, ds, ts)?;
        }
        Ok(id)
    }

    fn put_structure(&self, c: &mut dyn Connection, s: &Value) -> Result<String, CatalogError> {
        let text = json_text(s)?;
        let id = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()));
        c.execute(
            &format!(
                "INSERT INTO structures (id, structure) VALUES ({}, {}) ON CONFLICT (id) DO NOTHING",
                self.p(1, ""),
                self.p(2, "::jsonb")
            ),
            &[Param::Text(id.clone()), Param::Text(text)],
        )?;
        Ok(id)
    }

    fn put_data_source(
        &self,
        c: &mut dyn Connection,
        node_id: i64,
        node: &NewNode,
        ds: &NewDataSource,
        ts: &str,
    ) -> Result<(), CatalogError> {
        let structure_id = match &node.structure {
            Some(s) => Some(self.put_structure(c, s)?),
            None => None,
        };
        let rows = c.query(
            &format!(
                "INSERT INTO data_sources (node_id, structure_family, structure_id, mimetype, parameters, management, properties) \
                 VALUES ({}, {}, {}, {}, {}, {}, {}) RETURNING id",
                self.p(1, "::bigint"),
                self.p(2, ""),
                self.p(3, ""),
                self.p(4, ""),
                self.p(5, "::jsonb"),
                self.p(6, ""),
                self.p(7, "::jsonb")
            ),
            &[
                Param::Int(node_id),
                Param::Text(node.structure_family.as_str().to_string()),
                structure_id.map_or(Param::Null, Param::Text),
                Param::Text(ds.mimetype.clone()),
                Param::Text(json_text(&ds.parameters)?),
                Param::Text(ds.management.clone()),
                Param::Text(json_text(&ds.properties)?),
            ],
        )?;
        let ds_id = rows
            .first()
            .ok_or_else(|| CatalogError::Internal("INSERT returned no id".into()))?
            .int(0)?;
        for a in &ds.assets {
            self.insert_asset(c, ds_id, a, ts)?;
        }
        Ok(())
    }

    fn insert_asset(
        &self,
        c: &mut dyn Connection,
        ds_id: i64,
        a: &NewAsset,
        ts: &str,
    ) -> Result<(), CatalogError> {
        let is_dir = match self.dialect() {
            Dialect::Sqlite => Param::Int(i64::from(a.is_directory)),
            Dialect::Postgres => Param::Text(a.is_directory.to_string()),
        };
        c.execute(
            &format!(
                "INSERT INTO assets (data_uri, is_directory, time_created) VALUES ({}, {}, {}) \
                 ON CONFLICT (data_uri) DO NOTHING",
                self.p(1, ""),
                self.p(2, "::boolean"),
                self.p(3, "::timestamptz")
            ),
            &[
                Param::Text(a.data_uri.clone()),
                is_dir,
                Param::Text(ts.to_string()),
            ],
        )?;
        c.execute(
            &format!(
                "INSERT INTO data_source_asset_association (data_source_id, asset_id, parameter, num) \
                 SELECT {}, id, {}, {} FROM assets WHERE data_uri = {}",
                self.p(1, "::bigint"),
                self.p(2, ""),
                self.p(3, "::integer"),
                self.p(4, "")
            ),
            &[
                Param::Int(ds_id),
                a.parameter.clone().map_or(Param::Null, Param::Text),
                a.num.map_or(Param::Null, Param::Int),
                Param::Text(a.data_uri.clone()),
            ],
        )?;
        Ok(())
    }

    /// Add `asset` to data source `ds_id` (an appended table segment), in
    /// one transaction: once this returns, readers see it.
    ///
    /// # Errors
    /// Database errors.
    pub fn add_asset(&self, ds_id: i64, asset: &NewAsset) -> Result<(), CatalogError> {
        let ts = now();
        self.pool
            .transaction(|c| self.insert_asset(c, ds_id, asset, &ts))
    }

    /// Replace the assets of data source `ds_id` bound to (`parameter`,
    /// `num`) by `asset`, in one transaction, and return the URIs of the
    /// assets it replaced (for the caller to remove).
    ///
    /// # Errors
    /// Database errors.
    pub fn replace_assets(
        &self,
        ds_id: i64,
        parameter: &str,
        num: Option<i64>,
        asset: &NewAsset,
    ) -> Result<Vec<String>, CatalogError> {
        let ts = now();
        let same = match self.dialect() {
            Dialect::Sqlite => "IS",
            Dialect::Postgres => "IS NOT DISTINCT FROM",
        };
        self.pool.transaction(|c| {
            let old = c.query(
                &format!(
                    "DELETE FROM data_source_asset_association WHERE data_source_id = {} \
                     AND parameter = {} AND num {same} {} RETURNING asset_id",
                    self.p(1, "::bigint"),
                    self.p(2, ""),
                    self.p(3, "::integer"),
                ),
                &[
                    Param::Int(ds_id),
                    Param::Text(parameter.to_string()),
                    num.map_or(Param::Null, Param::Int),
                ],
            )?;
            let mut uris = Vec::with_capacity(old.len());
            for row in &old {
                let removed = c.query(
                    &format!(
                        "DELETE FROM assets WHERE id = {} AND NOT EXISTS \
                         (SELECT 1 FROM data_source_asset_association WHERE asset_id = {}) \
                         RETURNING data_uri",
                        self.p(1, "::bigint"),
                        self.p(1, "::bigint"),
                    ),
                    &[Param::Int(row.int(0)?)],
                )?;
                for r in &removed {
                    uris.push(r.text(0)?.to_string());
                }
            }
            self.insert_asset(c, ds_id, asset, &ts)?;
            Ok(uris)
        })
    }

    /// Set the structure of node `node_id` and of its data sources (an
    /// array grown by `PATCH ...?extend=true`), in one transaction.
    ///
    /// # Errors
    /// Database errors.
    pub fn set_structure(&self, node_id: i64, structure: &Value) -> Result<(), CatalogError> {
        self.pool.transaction(|c| {
            let sid = self.put_structure(c, structure)?;
            for table in ["nodes", "data_sources"] {
                let column = if table == "nodes" { "id" } else { "node_id" };
                c.execute(
                    &format!(
                        "UPDATE {table} SET structure_id = {} WHERE {column} = {}",
                        self.p(1, ""),
                        self.p(2, "::bigint")
                    ),
                    &[Param::Text(sid.clone()), Param::Int(node_id)],
                )?;
            }
            Ok(())
        })
    }

    /// The data sources of a node, with their assets.
    ///
    /// # Errors
    /// Database errors.
    pub fn data_sources(&self, node_id: i64) -> Result<Vec<DataSource>, CatalogError> {
        let mut c = self.pool.get()?;
        let rows = c.rows(
            &format!(
                "SELECT d.id, d.mimetype, {}, d.management, {}, {} FROM data_sources d \
                 LEFT JOIN structures s ON s.id = d.structure_id WHERE d.node_id = {} ORDER BY d.id",
                self.t("d.parameters"),
                self.t("s.structure"),
                self.t("d.properties"),
                self.p(1, "::bigint")
            ),
            &[Param::Int(node_id)],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = r.int(0)?;
            let assets = c
                .rows(
                    &format!(
                        "SELECT a.data_uri, x.parameter, x.num, a.id, {}, a.size FROM data_source_asset_association x \
                         JOIN assets a ON a.id = x.asset_id WHERE x.data_source_id = {} \
                         ORDER BY x.parameter, x.num, a.id",
                        match self.dialect() {
                            Dialect::Sqlite => "a.is_directory",
                            Dialect::Postgres => "a.is_directory::int",
                        },
                        self.p(1, "::bigint")
                    ),
                    &[Param::Int(id)],
                )?
                .iter()
                .map(|a| {
                    let int = |i: usize| match a.0.get(i) {
                        Some(db::Cell::Int(n)) => Some(*n),
                        _ => None,
                    };
                    Ok(Asset {
                        id: a.int(3)?,
                        data_uri: a.text(0)?.to_string(),
                        is_directory: int(4).unwrap_or(0) != 0,
                        size: int(5),
                        parameter: a.opt_text(1)?.map(str::to_string),
                        num: int(2),
                    })
                })
                .collect::<Result<Vec<_>, CatalogError>>()?;
            out.push(DataSource {
                id,
                mimetype: r.text(1)?.to_string(),
                parameters: r.json(2)?,
                properties: r.json(5)?,
                management: r.text(3)?.to_string(),
                structure: match r.opt_text(4)? {
                    Some(_) => Some(r.json(4)?),
                    None => None,
                },
                assets,
            });
        }
        Ok(out)
    }

    /// Number of children of a node: exact, one row read (the count is
    /// kept up to date by every insert and delete).
    ///
    /// # Errors
    /// Database errors.
    pub fn count_children(&self, node_id: i64) -> Result<usize, CatalogError> {
        let mut c = self.pool.get()?;
        let rows = c.rows(
            &format!(
                "SELECT child_count FROM nodes WHERE id = {}",
                self.p(1, "::bigint")
            ),
            &[Param::Int(node_id)],
        )?;
        Ok(rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0) as usize)
    }

    /// Number of children matching `queries`: exact on SQLite; on
    /// PostgreSQL exact up to [`POSTGRES_EXACT_COUNT_LIMIT`], then the
    /// planner's estimate (never below that limit), as upstream does.
    ///
    /// # Errors
    /// Database errors; bad keys.
    pub fn count_matching(&self, node_id: i64, queries: &[Query]) -> Result<usize, CatalogError> {
        if queries.is_empty() {
            return self.count_children(node_id);
        }
        self.count(node_id, queries)
    }

    fn count(&self, node_id: i64, queries: &[Query]) -> Result<usize, CatalogError> {
        let mut s = self.sql();
        let parent = s.int(node_id);
        let mut conds = vec![format!("n.parent = {parent}")];
        for q in queries {
            conds.push(sql::condition(&mut s, q)?);
        }
        let where_ = conds.join(" AND ");
        let mut c = self.pool.get()?;
        let exact_limit = match self.dialect() {
            Dialect::Sqlite => EXACT_COUNT_LIMIT,
            Dialect::Postgres => POSTGRES_EXACT_COUNT_LIMIT,
        };
        // Count at most the limit + 1 rows: cheap however big the container.
        let limit = s.int(exact_limit + 1);
        let capped = c.rows(
            &format!("SELECT count(*) FROM (SELECT 1 FROM nodes n WHERE {where_} LIMIT {limit}) AS capped"),
            &s.params,
        )?;
        let n = capped.first().map(|r| r.int(0)).transpose()?.unwrap_or(0);
        if n <= exact_limit {
            return Ok(n as usize);
        }
        let exact = match self.dialect() {
            // SQLite counts a million index entries in a few milliseconds.
            Dialect::Sqlite => {
                let rows = c.rows(
                    &format!("SELECT count(*) FROM nodes n WHERE {where_}"),
                    &s.params[..s.params.len() - 1],
                )?;
                rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(n)
            }
            Dialect::Postgres => {
                // The planner's estimate, as upstream does beyond its
                // threshold; never below what we counted exactly.
                // The top plan line reads `... (cost=a..b rows=N width=w)`.
                let rows = c.rows(
                    &format!("EXPLAIN SELECT 1 FROM nodes n WHERE {where_}"),
                    &s.params[..s.params.len() - 1],
                )?;
                let top = rows.first().map(|r| r.text(0)).transpose()?.unwrap_or("");
                let est = top
                    .split("rows=")
                    .nth(1)
                    .and_then(|t| t.split_whitespace().next())
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or(0);
                est.max(n)
            }
        };
        Ok(exact as usize)
    }

    /// Replace a node's metadata (and specs, access blob), keeping the old
    /// values as a revision. Returns the new revision number.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] for a missing node; database errors.
    pub fn update_metadata(
        &self,
        path: &[String],
        metadata: &Map<String, Value>,
        specs: Option<&[Spec]>,
        access_blob: Option<&Value>,
    ) -> Result<i64, CatalogError> {
        self.pool.transaction(|c| {
            let rows = c.query(
                &format!(
                    "SELECT id, {}, {}, {}, {} FROM nodes WHERE path = {}",
                    self.t("metadata"),
                    self.t("specs"),
                    self.t("access_blob"),
                    self.t("time_updated"),
                    self.p(1, "")
                ),
                &[Param::Text(path.join("/"))],
            )?;
            let row = rows
                .first()
                .ok_or_else(|| CatalogError::NotFound(format!("No such entry: {path:?}")))?;
            let id = row.int(0)?;
            let next = c.query(
                &format!(
                    "SELECT coalesce(max(revision_number), 0) + 1 FROM revisions WHERE node_id = {}",
                    self.p(1, "::bigint")
                ),
                &[Param::Int(id)],
            )?;
            let number = next.first().map(|r| r.int(0)).transpose()?.unwrap_or(1);
            c.execute(
                &format!(
                    "INSERT INTO revisions (node_id, revision_number, metadata, specs, access_blob, time_updated) \
                     VALUES ({}, {}, {}, {}, {}, {})",
                    self.p(1, "::bigint"),
                    self.p(2, "::bigint"),
                    self.p(3, "::jsonb"),
                    self.p(4, "::jsonb"),
                    self.p(5, "::jsonb"),
                    self.p(6, "::timestamptz")
                ),
                &[
                    Param::Int(id),
                    Param::Int(number),
                    Param::Text(row.text(1)?.to_string()),
                    Param::Text(row.text(2)?.to_string()),
                    Param::Text(row.text(3)?.to_string()),
                    Param::Text(row.text(4)?.to_string()),
                ],
            )?;
            let specs = match specs {
                Some(s) => json_text(&s)?,
                None => row.text(2)?.to_string(),
            };
            let access = match access_blob {
                Some(a) => json_text(a)?,
                None => row.text(3)?.to_string(),
            };
            c.execute(
                &format!(
                    "UPDATE nodes SET metadata = {}, specs = {}, access_blob = {}, time_updated = {} WHERE id = {}",
                    self.p(1, "::jsonb"),
                    self.p(2, "::jsonb"),
                    self.p(3, "::jsonb"),
                    self.p(4, "::timestamptz"),
                    self.p(5, "::bigint")
                ),
                &[
                    Param::Text(json_text(metadata)?),
                    Param::Text(specs),
                    Param::Text(access),
                    Param::Text(now()),
                    Param::Int(id),
                ],
            )?;
            if self.dialect() == Dialect::Sqlite {
                c.execute("DELETE FROM nodes_fts WHERE rowid = ?1", &[Param::Int(id)])?;
                c.execute(
                    "INSERT INTO nodes_fts (rowid, text) VALUES (?1, ?2)",
                    &[
                        Param::Int(id),
                        Param::Text(sql::strings_of(&Value::Object(metadata.clone()))),
                    ],
                )?;
            }
            Ok(number)
        })
    }

    /// A node's revisions, oldest first, paged.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] for a missing node.
    pub fn revisions(
        &self,
        path: &[String],
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<Revision>), CatalogError> {
        let id = self
            .node_id(path)?
            .ok_or_else(|| CatalogError::NotFound(format!("No such entry: {path:?}")))?;
        let mut c = self.pool.get()?;
        let total = c
            .rows(
                &format!(
                    "SELECT count(*) FROM revisions WHERE node_id = {}",
                    self.p(1, "::bigint")
                ),
                &[Param::Int(id)],
            )?
            .first()
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        let rows = c.rows(
            &format!(
                "SELECT revision_number, {}, {}, {}, {} FROM revisions WHERE node_id = {} \
                 ORDER BY revision_number LIMIT {} OFFSET {}",
                self.t("metadata"),
                self.t("specs"),
                self.t("access_blob"),
                self.t("time_updated"),
                self.p(1, "::bigint"),
                self.p(2, "::bigint"),
                self.p(3, "::bigint")
            ),
            &[
                Param::Int(id),
                Param::Int(limit.min(i64::MAX as usize) as i64),
                Param::Int(offset.min(i64::MAX as usize) as i64),
            ],
        )?;
        let revs = rows
            .iter()
            .map(|r| {
                Ok(Revision {
                    revision_number: r.int(0)?,
                    metadata: r.json(1)?,
                    specs: r.json(2)?,
                    access_blob: r.json(3)?,
                    time_updated: r.text(4)?.to_string(),
                })
            })
            .collect::<Result<Vec<_>, CatalogError>>()?;
        Ok((total as usize, revs))
    }

    /// Delete one revision.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] if the node or revision is missing.
    pub fn delete_revision(&self, path: &[String], number: i64) -> Result<(), CatalogError> {
        let id = self
            .node_id(path)?
            .ok_or_else(|| CatalogError::NotFound(format!("No such entry: {path:?}")))?;
        let mut c = self.pool.get()?;
        let n = c.execute(
            &format!(
                "DELETE FROM revisions WHERE node_id = {} AND revision_number = {}",
                self.p(1, "::bigint"),
                self.p(2, "::bigint")
            ),
            &[Param::Int(id), Param::Int(number)],
        )?;
        if n == 0 {
            return Err(CatalogError::NotFound(format!(
                "No revision {number} of {path:?}"
            )));
        }
        Ok(())
    }

    /// Delete a node and everything below it.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] for a missing node;
    /// [`CatalogError::BadRequest`] for the root.
    pub fn delete_node(&self, path: &[String]) -> Result<(), CatalogError> {
        self.delete_node_checked(path, true, false)
    }

    /// Delete the node at `path`; without `recursive`, only if it has no
    /// children (checked in the same transaction).
    ///
    /// # Errors
    /// As [`Catalog::delete_node`]; [`CatalogError::Conflict`] for a
    /// non-empty node without `recursive`.
    pub fn delete_node_checked(
        &self,
        path: &[String],
        recursive: bool,
        external_only: bool,
    ) -> Result<(), CatalogError> {
        if path.is_empty() {
            return Err(CatalogError::BadRequest(
                "The root cannot be deleted.".into(),
            ));
        }
        self.pool.transaction(|c| {
            let like_prefix = format!("{}/", path.join("/"));
            if self.dialect() == Dialect::Sqlite {
                // The contentless FTS table has no foreign key to cascade.
                c.execute(
                    "DELETE FROM nodes_fts WHERE rowid IN (SELECT id FROM nodes WHERE path = ?1 OR substr(path, 1, length(?2)) = ?2)",
                    &[Param::Text(path.join("/")), Param::Text(like_prefix)],
                )?;
            }
            let parent = c.query(
                &format!(
                    "SELECT parent, child_count FROM nodes WHERE path = {}",
                    self.p(1, "")
                ),
                &[Param::Text(path.join("/"))],
            )?;
            let Some(parent) = parent.first() else {
                return Err(CatalogError::NotFound(format!("No such entry: {path:?}")));
            };
            if !recursive && parent.int(1)? > 0 {
                return Err(CatalogError::Conflict(
                    "Cannot delete a node that is not empty. Use recursive=true to delete it \
                     and everything below it."
                        .into(),
                ));
            }
            if external_only {
                let internal = c.query(
                    &format!(
                        "SELECT 1 FROM nodes n JOIN data_sources d ON d.node_id = n.id \
                         WHERE d.management <> 'external' AND (n.path = {p} OR \
                         substr(n.path, 1, length({q})) = {q}) LIMIT 1",
                        p = self.p(1, ""),
                        q = self.p(2, "")
                    ),
                    &[
                        Param::Text(path.join("/")),
                        Param::Text(format!("{}/", path.join("/"))),
                    ],
                )?;
                if !internal.is_empty() {
                    return Err(CatalogError::Conflict(
                        "Some items in this tree are internally managed. Deleting the records \
                         will also delete the underlying data files. If you want to delete \
                         them, pass external_only=False."
                            .into(),
                    ));
                }
            }
            let parent_id = parent.int(0)?;
            // The subtree's assets go too, unless a node outside it shares
            // them (the same file registered twice).
            let in_subtree = |n: &str| {
                format!(
                    "({n}.path = {p} OR substr({n}.path, 1, length({q})) = {q})",
                    p = self.p(1, ""),
                    q = self.p(2, "")
                )
            };
            c.execute(
                &format!(
                    "DELETE FROM assets WHERE id IN (SELECT x.asset_id FROM nodes n \
                     JOIN data_sources d ON d.node_id = n.id \
                     JOIN data_source_asset_association x ON x.data_source_id = d.id WHERE {}) \
                     AND NOT EXISTS (SELECT 1 FROM data_source_asset_association x2 \
                     JOIN data_sources d2 ON d2.id = x2.data_source_id \
                     JOIN nodes n2 ON n2.id = d2.node_id \
                     WHERE x2.asset_id = assets.id AND NOT {})",
                    in_subtree("n"),
                    in_subtree("n2")
                ),
                &[
                    Param::Text(path.join("/")),
                    Param::Text(format!("{}/", path.join("/"))),
                ],
            )?;
            c.execute(
                &format!("DELETE FROM nodes WHERE path = {}", self.p(1, "")),
                &[Param::Text(path.join("/"))],
            )?;
            c.execute(
                &format!(
                    "UPDATE nodes SET child_count = child_count - 1 WHERE id = {}",
                    self.p(1, "::bigint")
                ),
                &[Param::Int(parent_id)],
            )?;
            Ok(())
        })
    }

    /// The query plan of `sql` (SQLite `EXPLAIN QUERY PLAN`, PostgreSQL
    /// `EXPLAIN`), one line per step: for docs and tests.
    ///
    /// # Errors
    /// Database errors.
    pub fn explain(&self, sql: &str, params: &[Param]) -> Result<String, CatalogError> {
        let mut c = self.pool.get()?;
        Ok(match self.dialect() {
            Dialect::Sqlite => c
                .rows(&format!("EXPLAIN QUERY PLAN {sql}"), params)?
                .iter()
                .map(|r| r.text(3).map(str::to_string))
                .collect::<Result<Vec<_>, _>>()?
                .join("\n"),
            Dialect::Postgres => c
                .rows(&format!("EXPLAIN {sql}"), params)?
                .iter()
                .map(|r| r.text(0).map(str::to_string))
                .collect::<Result<Vec<_>, _>>()?
                .join("\n"),
        })
    }

    /// Index metadata `key` for filters and sorts on values of type `t`
    /// (idempotent), and with `then_sort_by`, for equality on `key` sorted
    /// by that other key. Returns the statements run.
    ///
    /// # Errors
    /// [`CatalogError::BadRequest`] for a bad key; database errors.
    pub fn create_metadata_index(
        &self,
        key: &str,
        t: sql::ValueType,
        then_sort_by: Option<&str>,
    ) -> Result<Vec<String>, CatalogError> {
        let statements = sql::index_statements(self.dialect(), key, t, then_sort_by)?;
        let mut c = self.pool.get()?;
        for s in &statements {
            c.batch(s)?;
        }
        if self.dialect() == Dialect::Sqlite {
            // Let the planner know the new indexes' selectivity.
            c.batch("ANALYZE")?;
        } else {
            c.batch("ANALYZE nodes")?;
        }
        drop(c);
        self.load_index_names()?;
        Ok(statements)
    }

    /// Open a node's data through the opener registered for its data
    /// source's mimetype.
    pub(crate) fn open_data(
        &self,
        node_id: i64,
        family: StructureFamily,
    ) -> Result<NodeData, AdapterError> {
        let sources = self.data_sources(node_id)?;
        let ds = sources
            .first()
            .ok_or_else(|| AdapterError::Internal(format!("node {node_id} has no data source")))?;
        if ds.management == zarr_storage::WRITABLE {
            return open_writable(ds, family, self.writable.as_ref());
        }
        let opener = self.openers.get(&ds.mimetype).ok_or_else(|| {
            AdapterError::NotSupported(format!(
                "no reader for data sources of type {:?}",
                ds.mimetype
            ))
        })?;
        let data = opener.open(ds, family)?;
        Ok(data)
    }
}

/// Open a data source this server wrote (arrays as Zarr, tables as
/// Parquet segments), with the catalog's structure as the truth. Assets
/// are found in the writable `storage` when they lie in it, else as local
/// files (a catalog served without its storage configured).
fn open_writable(
    ds: &DataSource,
    family: StructureFamily,
    storage: Option<&tiled_storage::Storage>,
) -> Result<NodeData, AdapterError> {
    let structure = ds
        .structure
        .clone()
        .ok_or_else(|| AdapterError::Internal(format!("data source {} has no structure", ds.id)))?;
    let in_storage = |uri: &str| storage.and_then(|s| Some((s, s.relative(uri)?)));
    let bad_uri =
        |uri: &str| AdapterError::Internal(format!("{uri} is outside the writable storage"));
    match (ds.mimetype.as_str(), family) {
        (zarr_storage::ZARR_MIMETYPE, StructureFamily::Array) => {
            let st = serde_json::from_value(structure)
                .map_err(|e| AdapterError::Internal(format!("stored structure: {e}")))?;
            let uri = &ds
                .assets
                .first()
                .ok_or_else(|| {
                    AdapterError::Internal(format!("data source {} has no asset", ds.id))
                })?
                .data_uri;
            let store = match in_storage(uri) {
                Some((s, rel)) => s
                    .zarr_store(&rel)
                    .map_err(|e| AdapterError::Internal(format!("{uri}: {e}")))?,
                None => zarr_storage::local_store(&path_of_uri(uri).ok_or_else(|| bad_uri(uri))?)?,
            };
            Ok(NodeData::Array(Arc::new(
                zarr_storage::WritableArray::open(&store, uri, st)?,
            )))
        }
        (table_storage::PARQUET_MIMETYPE, StructureFamily::Table) => {
            let st: tiled_model::structure::TableStructure = serde_json::from_value(structure)
                .map_err(|e| AdapterError::Internal(format!("stored structure: {e}")))?;
            let mut segments = vec![Vec::new(); st.npartitions];
            for a in &ds.assets {
                if a.parameter.as_deref() != Some(table_storage::SEGMENT_PARAMETER) {
                    continue;
                }
                let part = a
                    .num
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n < st.npartitions)
                    .ok_or_else(|| {
                        AdapterError::Internal(format!("segment {} has no partition", a.data_uri))
                    })?;
                let source = match in_storage(&a.data_uri) {
                    Some((s, rel)) => match s.local_root() {
                        Some(root) => table_storage::SegmentSource::File(root.join(rel)),
                        None => table_storage::SegmentSource::Object(s.clone(), rel),
                    },
                    None => table_storage::SegmentSource::File(
                        path_of_uri(&a.data_uri).ok_or_else(|| bad_uri(&a.data_uri))?,
                    ),
                };
                segments[part].push(source);
            }
            Ok(NodeData::Table(Arc::new(
                table_storage::SegmentTable::open(st, segments)?,
            )))
        }
        (mimetype, family) => Err(AdapterError::Internal(format!(
            "no reader for writable {} data of type {mimetype:?}",
            family.as_str()
        ))),
    }
}

/// Keys of nodes: non-empty, no `/`, not `.`/`..`, no control characters,
/// at most 255 bytes.
///
/// # Errors
/// [`CatalogError::BadRequest`] otherwise.
pub fn validate_node_key(key: &str) -> Result<(), CatalogError> {
    let ok = !key.is_empty()
        && key.len() <= 255
        && key != "."
        && key != ".."
        && !key.contains('/')
        && !key.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(CatalogError::BadRequest(format!(
            "invalid key {key:?}: keys are 1 to 255 bytes, without '/' or control characters"
        )))
    }
}
