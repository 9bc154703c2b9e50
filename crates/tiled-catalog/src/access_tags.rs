//! Access tag definitions kept in the catalog, as upstream 0.2.20 keeps
//! them (its `AccessTagsParser` reads them from the catalog database): the
//! tags (and which are public), the principals they name, the scopes each
//! tag grants each principal, and who owns each tag. `tiled admin
//! compile-tags` fills them from a tag file; the access policy reads them.

use crate::db::Param;
use crate::{Catalog, CatalogError};

/// Compiled tag definitions, row by row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessTagRows {
    /// Every tag: name, whether it is public.
    pub tags: Vec<(String, bool)>,
    /// (tag, principal, scope).
    pub grants: Vec<(String, String, String)>,
    /// (tag, principal).
    pub owners: Vec<(String, String)>,
}

impl Catalog {
    /// The stored tag definitions.
    ///
    /// # Errors
    /// Database errors.
    pub fn access_tags(&self) -> Result<AccessTagRows, CatalogError> {
        let mut c = self.pool.get()?;
        let tags = c
            .rows(
                "SELECT name, CASE WHEN is_public THEN 1 ELSE 0 END FROM access_tags ORDER BY name",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?.to_string(), r.int(1)? != 0)))
            .collect::<Result<_, CatalogError>>()?;
        let grants = c
            .rows(
                "SELECT t.name, p.name, g.scope FROM access_grants g \
                 JOIN access_tags t ON t.id = g.tag_id \
                 JOIN access_tags_principals p ON p.id = g.principal_id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.text(0)?.to_string(),
                    r.text(1)?.to_string(),
                    r.text(2)?.to_string(),
                ))
            })
            .collect::<Result<_, CatalogError>>()?;
        let owners = c
            .rows(
                "SELECT t.name, p.name FROM access_tag_owners_association o \
                 JOIN access_tags t ON t.id = o.tag_id \
                 JOIN access_tags_principals p ON p.id = o.principal_id",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?.to_string(), r.text(1)?.to_string())))
            .collect::<Result<_, CatalogError>>()?;
        Ok(AccessTagRows {
            tags,
            grants,
            owners,
        })
    }

    /// Replace the stored tag definitions with `rows`, in one transaction:
    /// readers see the old definitions or the new, never a mix.
    ///
    /// # Errors
    /// [`CatalogError::BadRequest`] for a grant or owner naming an unlisted
    /// tag; database errors (nothing is changed).
    pub fn replace_access_tags(&self, rows: &AccessTagRows) -> Result<(), CatalogError> {
        let listed: std::collections::BTreeSet<&str> =
            rows.tags.iter().map(|(t, _)| t.as_str()).collect();
        if let Some(t) = rows
            .grants
            .iter()
            .map(|g| &g.0)
            .chain(rows.owners.iter().map(|o| &o.0))
            .find(|t| !listed.contains(t.as_str()))
        {
            return Err(CatalogError::BadRequest(format!(
                "tag {t:?} is granted or owned but not defined"
            )));
        }
        let mut principals: Vec<&str> = rows
            .grants
            .iter()
            .map(|g| g.1.as_str())
            .chain(rows.owners.iter().map(|o| o.1.as_str()))
            .collect();
        principals.sort_unstable();
        principals.dedup();
        self.pool.transaction(|c| {
            for table in [
                "access_grants",
                "access_tag_owners_association",
                "access_tags",
                "access_tags_principals",
            ] {
                c.execute(&format!("DELETE FROM {table}"), &[])?;
            }
            for (name, public) in &rows.tags {
                c.execute(
                    &format!(
                        "INSERT INTO access_tags (name, is_public) VALUES ({}, {})",
                        self.p(1, ""),
                        self.p(2, "::int::boolean")
                    ),
                    &[Param::Text(name.clone()), Param::Int(i64::from(*public))],
                )?;
            }
            for name in &principals {
                c.execute(
                    &format!(
                        "INSERT INTO access_tags_principals (name) VALUES ({})",
                        self.p(1, "")
                    ),
                    &[Param::Text((*name).to_string())],
                )?;
            }
            for (tag, who, scope) in &rows.grants {
                c.execute(
                    &format!(
                        "INSERT INTO access_grants (tag_id, principal_id, scope) \
                         SELECT t.id, p.id, {} FROM access_tags t, access_tags_principals p \
                         WHERE t.name = {} AND p.name = {} ON CONFLICT DO NOTHING",
                        self.p(3, ""),
                        self.p(1, ""),
                        self.p(2, "")
                    ),
                    &[
                        Param::Text(tag.clone()),
                        Param::Text(who.clone()),
                        Param::Text(scope.clone()),
                    ],
                )?;
            }
            for (tag, who) in &rows.owners {
                c.execute(
                    &format!(
                        "INSERT INTO access_tag_owners_association (tag_id, principal_id) \
                         SELECT t.id, p.id FROM access_tags t, access_tags_principals p \
                         WHERE t.name = {} AND p.name = {} ON CONFLICT DO NOTHING",
                        self.p(1, ""),
                        self.p(2, "")
                    ),
                    &[Param::Text(tag.clone()), Param::Text(who.clone())],
                )?;
            }
            Ok(())
        })
    }
}
