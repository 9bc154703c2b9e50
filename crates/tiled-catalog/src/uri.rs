//! Catalog URIs as upstream (SQLAlchemy) writes them.

use std::path::PathBuf;

use crate::CatalogError;

/// Where a catalog lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogUri {
    /// An SQLite file (`sqlite:///relative.db`, `sqlite:////absolute.db`).
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgresql://user@host:port/db`).
    Postgres(String),
}

impl CatalogUri {
    /// Parse `sqlite:///path`, `sqlite+aiosqlite:///path`,
    /// `postgresql://...`, `postgresql+asyncpg://...` or `postgres://...`.
    /// A bare path is taken as an SQLite file.
    ///
    /// # Errors
    /// [`CatalogError::BadUri`] for other schemes or an empty path.
    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        let text = text.trim();
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None if !text.is_empty() => return Ok(CatalogUri::Sqlite(PathBuf::from(text))),
            None => return Err(CatalogError::BadUri("empty catalog URI".into())),
        };
        // SQLAlchemy's driver suffix (`+aiosqlite`, `+asyncpg`) names a
        // Python driver; the database is the same.
        let base = scheme.split('+').next().unwrap_or("");
        match base {
            "sqlite" => {
                // sqlite:///x.db → "x.db"; sqlite:////tmp/x.db → "/tmp/x.db".
                let path = rest.strip_prefix('/').unwrap_or(rest);
                let path = path.split('?').next().unwrap_or("");
                if path.is_empty() {
                    return Err(CatalogError::BadUri(format!(
                        "{text:?} names no file; in-memory SQLite catalogs are not supported (use --temp)"
                    )));
                }
                Ok(CatalogUri::Sqlite(PathBuf::from(path)))
            }
            "postgresql" | "postgres" => Ok(CatalogUri::Postgres(format!("postgresql://{rest}"))),
            other => Err(CatalogError::BadUri(format!(
                "unsupported catalog scheme {other:?}: use sqlite:///path.db or postgresql://..."
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_spellings() {
        assert_eq!(
            CatalogUri::parse("sqlite:///catalog.db").unwrap(),
            CatalogUri::Sqlite("catalog.db".into())
        );
        assert_eq!(
            CatalogUri::parse("sqlite+aiosqlite:////tmp/c.db").unwrap(),
            CatalogUri::Sqlite("/tmp/c.db".into())
        );
        assert_eq!(
            CatalogUri::parse("postgresql+asyncpg://u:p@h:5/db").unwrap(),
            CatalogUri::Postgres("postgresql://u:p@h:5/db".into())
        );
        assert!(CatalogUri::parse("mysql://x").is_err());
        assert!(CatalogUri::parse("sqlite://").is_err());
    }
}
