//! The catalog schema and its versioned migrations, one list per dialect.
//!
//! Both dialects hold the same tables and columns:
//! - `nodes`: one row per node; `parent` + `key` unique, `path` (the keys
//!   joined by `/`, `''` for the root) unique, the structure family, JSON
//!   metadata, specs and access blob, timestamps, and the number of
//!   children (kept in the same transaction as every insert and delete, so
//!   counting a container of millions is one row read). Listing a container is an
//!   index range scan on `(parent, id)`: insertion order, stable while
//!   others insert.
//! - `structures`: deduplicated by the hash of their JSON.
//! - `data_sources`, `assets` and their association: where the bytes are.
//! - `revisions`: earlier metadata/specs/access blob of a node.
//! - full text: an FTS5 table (SQLite) or a generated `tsvector` column with
//!   a GIN index (PostgreSQL) over every string in the metadata.
//!
//! A migration runs in one transaction and bumps `schema_version`. New
//! versions are appended to both lists (never edit a released one):
//! - 1: the initial schema;
//! - 2: `data_sources.properties`;
//! - 3: access tag definitions (`access_tags`, `access_tags_principals`,
//!   `access_grants`, `access_tag_owners_association`).

use crate::CatalogError;
use crate::db::{Dialect, Pool};

/// The newest schema version this build knows.
pub const LATEST: i64 = 3;

const SQLITE: &[&str] = &[
    // 1: the initial schema.
    r#"
CREATE TABLE structures (
    id TEXT PRIMARY KEY,
    structure TEXT NOT NULL
);
CREATE TABLE nodes (
    id INTEGER PRIMARY KEY,
    parent INTEGER REFERENCES nodes(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    structure_family TEXT NOT NULL,
    structure_id TEXT REFERENCES structures(id),
    metadata TEXT NOT NULL DEFAULT '{}',
    specs TEXT NOT NULL DEFAULT '[]',
    access_blob TEXT NOT NULL DEFAULT '{}',
    time_created TEXT NOT NULL,
    time_updated TEXT NOT NULL,
    child_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (parent, key)
);
CREATE INDEX nodes_parent_id ON nodes (parent, id);
CREATE INDEX nodes_parent_family ON nodes (parent, structure_family);
CREATE TABLE data_sources (
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    structure_family TEXT NOT NULL,
    structure_id TEXT REFERENCES structures(id),
    mimetype TEXT NOT NULL,
    parameters TEXT NOT NULL DEFAULT '{}',
    management TEXT NOT NULL DEFAULT 'external'
);
CREATE INDEX data_sources_node ON data_sources (node_id);
CREATE TABLE assets (
    id INTEGER PRIMARY KEY,
    data_uri TEXT NOT NULL UNIQUE,
    is_directory INTEGER NOT NULL,
    hash_type TEXT,
    hash_content TEXT,
    size INTEGER,
    time_created TEXT NOT NULL
);
CREATE TABLE data_source_asset_association (
    data_source_id INTEGER NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
    asset_id INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    parameter TEXT,
    num INTEGER,
    UNIQUE (data_source_id, asset_id, parameter, num)
);
CREATE INDEX association_asset ON data_source_asset_association (asset_id);
CREATE TABLE revisions (
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    revision_number INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    specs TEXT NOT NULL,
    access_blob TEXT NOT NULL,
    time_updated TEXT NOT NULL,
    UNIQUE (node_id, revision_number)
);
CREATE VIRTUAL TABLE nodes_fts USING fts5(
    text, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 0'
);
"#,
    // 2: data sources carry `properties` (the wire's free-form dict).
    r#"
ALTER TABLE data_sources ADD COLUMN properties TEXT NOT NULL DEFAULT '{}';
"#,
    // 3: access tag definitions (upstream 0.2.20 keeps them in the catalog,
    // in tables of these names): tags, the principals they name, the
    // scopes each grants each principal, and the tags' owners.
    r#"
CREATE TABLE access_tags (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    is_public INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE access_tags_principals (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE access_grants (
    tag_id INTEGER NOT NULL REFERENCES access_tags(id) ON DELETE CASCADE,
    principal_id INTEGER NOT NULL REFERENCES access_tags_principals(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    PRIMARY KEY (tag_id, principal_id, scope)
);
CREATE TABLE access_tag_owners_association (
    tag_id INTEGER NOT NULL REFERENCES access_tags(id) ON DELETE CASCADE,
    principal_id INTEGER NOT NULL REFERENCES access_tags_principals(id) ON DELETE CASCADE,
    PRIMARY KEY (tag_id, principal_id)
);
"#,
];

const POSTGRES: &[&str] = &[
    // 1: the initial schema.
    r#"
CREATE TABLE structures (
    id TEXT PRIMARY KEY,
    structure JSONB NOT NULL
);
CREATE TABLE nodes (
    id BIGSERIAL PRIMARY KEY,
    parent BIGINT REFERENCES nodes(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    structure_family TEXT NOT NULL,
    structure_id TEXT REFERENCES structures(id),
    metadata JSONB NOT NULL DEFAULT '{}',
    specs JSONB NOT NULL DEFAULT '[]',
    access_blob JSONB NOT NULL DEFAULT '{}',
    time_created TIMESTAMPTZ NOT NULL,
    time_updated TIMESTAMPTZ NOT NULL,
    child_count BIGINT NOT NULL DEFAULT 0,
    fts TSVECTOR GENERATED ALWAYS AS (jsonb_to_tsvector('simple', metadata, '["string"]')) STORED,
    UNIQUE (parent, key)
);
CREATE INDEX nodes_parent_id ON nodes (parent, id);
CREATE INDEX nodes_parent_family ON nodes (parent, structure_family);
CREATE INDEX nodes_metadata ON nodes USING GIN (metadata jsonb_path_ops);
CREATE INDEX nodes_specs ON nodes USING GIN (specs jsonb_path_ops);
CREATE INDEX nodes_fts ON nodes USING GIN (fts);
CREATE TABLE data_sources (
    id BIGSERIAL PRIMARY KEY,
    node_id BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    structure_family TEXT NOT NULL,
    structure_id TEXT REFERENCES structures(id),
    mimetype TEXT NOT NULL,
    parameters JSONB NOT NULL DEFAULT '{}',
    management TEXT NOT NULL DEFAULT 'external'
);
CREATE INDEX data_sources_node ON data_sources (node_id);
CREATE TABLE assets (
    id BIGSERIAL PRIMARY KEY,
    data_uri TEXT NOT NULL UNIQUE,
    is_directory BOOLEAN NOT NULL,
    hash_type TEXT,
    hash_content TEXT,
    size BIGINT,
    time_created TIMESTAMPTZ NOT NULL
);
CREATE TABLE data_source_asset_association (
    data_source_id BIGINT NOT NULL REFERENCES data_sources(id) ON DELETE CASCADE,
    asset_id BIGINT NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    parameter TEXT,
    num INTEGER,
    UNIQUE (data_source_id, asset_id, parameter, num)
);
CREATE INDEX association_asset ON data_source_asset_association (asset_id);
CREATE TABLE revisions (
    id BIGSERIAL PRIMARY KEY,
    node_id BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    revision_number BIGINT NOT NULL,
    metadata JSONB NOT NULL,
    specs JSONB NOT NULL,
    access_blob JSONB NOT NULL,
    time_updated TIMESTAMPTZ NOT NULL,
    UNIQUE (node_id, revision_number)
);
"#,
    // 2: data sources carry `properties` (the wire's free-form dict).
    r#"
ALTER TABLE data_sources ADD COLUMN properties JSONB NOT NULL DEFAULT '{}';
"#,
    // 3: access tag definitions (upstream 0.2.20 keeps them in the catalog,
    // in tables of these names): tags, the principals they name, the
    // scopes each grants each principal, and the tags' owners.
    r#"
CREATE TABLE access_tags (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    is_public BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE access_tags_principals (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE access_grants (
    tag_id BIGINT NOT NULL REFERENCES access_tags(id) ON DELETE CASCADE,
    principal_id BIGINT NOT NULL REFERENCES access_tags_principals(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    PRIMARY KEY (tag_id, principal_id, scope)
);
CREATE TABLE access_tag_owners_association (
    tag_id BIGINT NOT NULL REFERENCES access_tags(id) ON DELETE CASCADE,
    principal_id BIGINT NOT NULL REFERENCES access_tags_principals(id) ON DELETE CASCADE,
    PRIMARY KEY (tag_id, principal_id)
);
"#,
];

fn migrations(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    }
}

/// The schema version of the database, 0 if it has no catalog yet.
///
/// # Errors
/// [`CatalogError::Database`] on a failed query.
pub fn version(pool: &Pool) -> Result<i64, CatalogError> {
    let mut c = pool.get()?;
    let exists = match pool.dialect {
        Dialect::Sqlite => c.rows(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            &[],
        )?,
        Dialect::Postgres => c.rows(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'schema_version'",
            &[],
        )?,
    };
    if exists.first().map(|r| r.int(0)).transpose()?.unwrap_or(0) == 0 {
        return Ok(0);
    }
    let rows = c.rows("SELECT max(version) FROM schema_version", &[])?;
    Ok(rows.first().and_then(|r| r.int(0).ok()).unwrap_or(0))
}

/// Bring the schema to [`LATEST`], one transaction per migration.
/// Returns the versions applied.
///
/// # Errors
/// [`CatalogError::NewerSchema`] if the database is newer than this build;
/// database errors (the failed migration is rolled back).
pub fn upgrade(pool: &Pool) -> Result<Vec<i64>, CatalogError> {
    upgrade_to(pool, LATEST)
}

/// Bring the schema to version `target` (at most [`LATEST`]); tests use it
/// to build an old catalog and check the path from it.
///
/// # Errors
/// As [`upgrade`].
pub fn upgrade_to(pool: &Pool, target: i64) -> Result<Vec<i64>, CatalogError> {
    let current = version(pool)?;
    if current > LATEST {
        return Err(CatalogError::NewerSchema {
            found: current,
            known: LATEST,
        });
    }
    let mut applied = Vec::new();
    for (i, sql) in migrations(pool.dialect).iter().enumerate() {
        let v = i as i64 + 1;
        if v <= current || v > target {
            continue;
        }
        pool.transaction(|c| {
            if v == 1 {
                c.batch("CREATE TABLE schema_version (version BIGINT NOT NULL)")?;
            }
            c.batch(sql)?;
            c.execute(
                match pool.dialect {
                    Dialect::Sqlite => "INSERT INTO schema_version (version) VALUES (?1)",
                    Dialect::Postgres => {
                        "INSERT INTO schema_version (version) VALUES ($1::text::bigint)"
                    }
                },
                &[crate::db::Param::Int(v)],
            )?;
            Ok(())
        })?;
        applied.push(v);
    }
    Ok(applied)
}
