//! Catalog nodes as adapters, so they serve through the same routes as
//! in-memory nodes.
//!
//! A container searches with one SQL statement (filters, sort, page and the
//! child counts of container children all at once). Arrays and tables carry
//! their structure from the catalog and open their data source only when
//! data is read, through the [`Opener`] registered for its mimetype.

use std::sync::{Arc, OnceLock};

use arrow_schema::SchemaRef;
use serde_json::Value;
use tiled_adapters::{
    AdapterError, ArrayAdapter, ArrayData, ContainerAdapter, Distinct, DistinctRequest,
    DistinctValue, Node, NodeData, SearchPage, SortKey, TableAdapter, search::cmp_json,
};
use tiled_model::{ArrayStructure, Query, ResolvedSlice, Spec, StructureFamily, TableStructure};

use crate::db::{Dialect, Param, Row};
use crate::sql;
use crate::{Catalog, CatalogError, DataSource};

/// Opens the data behind a data source (one per mimetype).
pub trait Opener: Send + Sync {
    /// The node's data for `source`, of the given structure family.
    ///
    /// # Errors
    /// [`AdapterError::Internal`] if the data cannot be opened.
    fn open(&self, source: &DataSource, family: StructureFamily) -> Result<NodeData, AdapterError>;
}

/// A container in the catalog.
#[derive(Clone)]
pub struct CatalogContainer {
    catalog: Arc<Catalog>,
    id: i64,
    path: Vec<String>,
    /// The child count, when the search that found this node computed it.
    count: Option<usize>,
}

/// Where a page of children starts.
#[derive(Clone, Copy, Debug)]
pub enum PageStart {
    /// Skip this many matching children.
    Offset(usize),
    /// Start after the child with this node id (keyset pagination).
    After(i64),
}

impl CatalogContainer {
    /// The catalog's root container.
    ///
    /// # Errors
    /// Database errors.
    pub fn root(catalog: Arc<Catalog>) -> Result<Self, CatalogError> {
        let id = catalog
            .node_id(&[])?
            .ok_or_else(|| CatalogError::Internal("the catalog has no root node".into()))?;
        Ok(CatalogContainer {
            catalog,
            id,
            path: Vec::new(),
            count: None,
        })
    }

    /// The root as a [`Node`].
    ///
    /// # Errors
    /// Database errors.
    pub fn root_node(catalog: Arc<Catalog>) -> Result<Node, CatalogError> {
        let root = CatalogContainer::root(catalog.clone())?;
        let mut c = catalog.pool.get()?;
        let rows = c.rows(
            &format!(
                "SELECT {}, {}, {} FROM nodes WHERE id = {}",
                catalog.t("metadata"),
                catalog.t("specs"),
                catalog.t("access_blob"),
                catalog.p(1, "::bigint")
            ),
            &[Param::Int(root.id)],
        )?;
        let row = rows
            .first()
            .ok_or_else(|| CatalogError::Internal("the root vanished".into()))?;
        let mut node = Node::container(root);
        fill_description(&mut node, row, 0)?;
        Ok(node)
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.path.join("/"))
        }
    }

    /// The statement (and its parameters) that reads one page of a search.
    /// Two phases: pick the page's ids (which an index can answer without
    /// reading any row), then read only those rows.
    ///
    /// # Errors
    /// [`CatalogError::BadRequest`] for bad keys.
    pub fn page_sql(
        &self,
        queries: &[Query],
        sort: &[SortKey],
        start: PageStart,
        limit: usize,
    ) -> Result<(String, Vec<Param>), CatalogError> {
        let dialect = self.catalog.dialect();
        let mut s = self.catalog.sql();
        let parent = s.int(self.id);
        let mut conds = vec![format!("n.parent = {parent}")];
        for q in queries {
            conds.push(sql::condition(&mut s, q)?);
        }
        let mut terms: Vec<(String, bool)> = Vec::new();
        for k in sort {
            for e in sql::order_exprs(dialect, &k.key)? {
                terms.push((e, k.descending));
            }
        }
        let offset = match start {
            PageStart::Offset(o) => o,
            PageStart::After(cursor) => {
                conds.push(sql::after_cursor(&mut s, &terms, cursor));
                0
            }
        };
        let where_ = conds.join(" AND ");
        let mut order: Vec<String> = terms
            .iter()
            .map(|(e, d)| format!("{e} {}", if *d { "DESC" } else { "ASC" }))
            .collect();
        // Ties (and the default) in insertion order.
        if terms.last().is_none_or(|(e, _)| e != sql::ID_ORDER) {
            order.push(format!("{} ASC", sql::ID_ORDER));
        }
        let lim = s.int(limit.min(i64::MAX as usize) as i64);
        let off = s.int(offset.min(i64::MAX as usize) as i64);
        let text = format!(
            "SELECT {} FROM nodes n LEFT JOIN structures s ON s.id = n.structure_id \
             WHERE n.id IN (SELECT n.id FROM nodes n WHERE {where_} ORDER BY {order} LIMIT {lim} OFFSET {off}) \
             ORDER BY {order}",
            self.columns(),
            order = order.join(", ")
        );
        Ok((text, s.params))
    }

    /// One page from `start`; reads one row more than `limit` to learn
    /// whether a next page exists, and if so hands out a cursor to it.
    fn page(
        &self,
        queries: &[Query],
        sort: &[SortKey],
        start: PageStart,
        limit: usize,
    ) -> Result<SearchPage, AdapterError> {
        let c = &self.catalog;
        let mut entries = Vec::new();
        let mut next_cursor = None;
        if limit > 0 {
            if let PageStart::After(cursor) = start {
                let sorted_by_metadata = sort.iter().any(|k| !k.key.is_empty());
                if sorted_by_metadata && !c.node_exists(cursor)? {
                    return Err(AdapterError::BadRequest(format!(
                        "page[cursor]={cursor} names an entry that was deleted; \
                         start again from page[offset]=0"
                    )));
                }
            }
            let (text, params) = self.page_sql(queries, sort, start, limit.saturating_add(1))?;
            let mut conn = c.pool.get().map_err(AdapterError::from)?;
            let rows = conn.rows(&text, &params).map_err(AdapterError::from)?;
            drop(conn);
            for r in rows.iter().take(limit) {
                let id = r.int(0).map_err(AdapterError::from)?;
                entries.push(self.node_from_row(r)?);
                if rows.len() > limit {
                    next_cursor = u64::try_from(id).ok();
                }
            }
        }
        let count = c.count_matching(self.id, queries)?;
        Ok(SearchPage {
            count,
            entries,
            next_cursor,
        })
    }

    /// The query plan of a search page (for docs and benchmarks).
    ///
    /// # Errors
    /// As [`CatalogContainer::page_sql`]; database errors.
    pub fn explain_search(
        &self,
        queries: &[Query],
        sort: &[SortKey],
        offset: usize,
        limit: usize,
    ) -> Result<String, CatalogError> {
        let (text, params) = self.page_sql(queries, sort, PageStart::Offset(offset), limit)?;
        self.catalog.explain(&text, &params)
    }

    /// A container at `path` (keys from the root).
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] if there is none.
    pub fn at(catalog: Arc<Catalog>, path: &[String]) -> Result<Self, CatalogError> {
        let id = catalog
            .node_id(path)?
            .ok_or_else(|| CatalogError::NotFound(format!("No such entry: {path:?}")))?;
        Ok(CatalogContainer {
            catalog,
            id,
            path: path.to_vec(),
            count: None,
        })
    }

    /// The SELECT list every node lookup uses (node alias `n`, structure
    /// alias `s`).
    fn columns(&self) -> String {
        let c = &self.catalog;
        format!(
            "n.id, n.key, n.structure_family, {}, {}, {}, {}, \
             CASE WHEN n.structure_family = 'container' THEN n.child_count END",
            c.t("n.metadata"),
            c.t("n.specs"),
            c.t("n.access_blob"),
            c.t("s.structure"),
        )
    }

    fn node_from_row(&self, row: &Row) -> Result<(String, Node), CatalogError> {
        let id = row.int(0)?;
        let key = row.text(1)?.to_string();
        let family = StructureFamily::parse(row.text(2)?)
            .map_err(|e| CatalogError::Internal(e.to_string()))?;
        let mut path = self.path.clone();
        path.push(key.clone());
        let structure = || -> Result<Value, CatalogError> {
            match row.opt_text(6)? {
                Some(_) => row.json(6),
                None => Err(CatalogError::Internal(format!(
                    "node {id} ({family:?}) has no structure"
                ))),
            }
        };
        let data = match family {
            StructureFamily::Container => NodeData::Container(Arc::new(CatalogContainer {
                catalog: self.catalog.clone(),
                id,
                path,
                count: match row.0.get(7) {
                    Some(crate::db::Cell::Int(n)) => Some(*n as usize),
                    _ => None,
                },
            })),
            StructureFamily::Array => {
                let st: ArrayStructure = serde_json::from_value(structure()?).map_err(|e| {
                    CatalogError::Internal(format!("node {id}: bad structure: {e}"))
                })?;
                NodeData::Array(Arc::new(CatalogArray {
                    catalog: self.catalog.clone(),
                    id,
                    structure: st,
                    opened: OnceLock::new(),
                }))
            }
            StructureFamily::Table => {
                let st: TableStructure = serde_json::from_value(structure()?).map_err(|e| {
                    CatalogError::Internal(format!("node {id}: bad structure: {e}"))
                })?;
                NodeData::Table(Arc::new(CatalogTable {
                    catalog: self.catalog.clone(),
                    id,
                    structure: st,
                    opened: OnceLock::new(),
                }))
            }
            other => {
                return Err(CatalogError::Internal(format!(
                    "node {id}: structure family {other:?} is not served yet"
                )));
            }
        };
        let mut node = Node::new(data);
        fill_description(&mut node, row, 3)?;
        node.data_sources = Some(Arc::new(CatalogDataSources {
            catalog: self.catalog.clone(),
            id,
            family,
        }));
        Ok((key, node))
    }
}

/// Metadata, specs and access tags from columns `first..first + 3`.
/// A catalog node's data sources, read from the database only when a
/// request includes them.
struct CatalogDataSources {
    catalog: Arc<Catalog>,
    id: i64,
    family: StructureFamily,
}

impl tiled_adapters::DataSourceLister for CatalogDataSources {
    fn data_sources(&self) -> Result<Value, AdapterError> {
        let sources = self.catalog.data_sources(self.id)?;
        Ok(Value::Array(
            sources.iter().map(|s| s.to_wire(self.family)).collect(),
        ))
    }
}

fn fill_description(node: &mut Node, row: &Row, first: usize) -> Result<(), CatalogError> {
    if let Value::Object(m) = row.json(first)? {
        node.metadata = Arc::new(m);
    }
    node.specs = serde_json::from_value::<Vec<Spec>>(row.json(first + 1)?)
        .map_err(|e| CatalogError::Internal(format!("bad specs: {e}")))?;
    let mut tags: Vec<String> = match row.json(first + 2)? {
        Value::Object(blob) => blob
            .get("tags")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    tags.sort();
    node.access_tags = tags;
    Ok(())
}

impl ContainerAdapter for CatalogContainer {
    fn len(&self) -> Result<usize, AdapterError> {
        match self.count {
            Some(n) => Ok(n),
            None => Ok(self.catalog.count_children(self.id)?),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Node>, AdapterError> {
        let c = &self.catalog;
        let mut conn = c.pool.get().map_err(AdapterError::from)?;
        let rows = conn
            .rows(
                &format!(
                    "SELECT {} FROM nodes n LEFT JOIN structures s ON s.id = n.structure_id \
                     WHERE n.path = {}",
                    self.columns(),
                    c.p(1, "")
                ),
                &[Param::Text(self.child_path(key))],
            )
            .map_err(AdapterError::from)?;
        drop(conn);
        match rows.first() {
            Some(r) => Ok(Some(self.node_from_row(r)?.1)),
            None => Ok(None),
        }
    }

    fn search(
        &self,
        queries: &[Query],
        sort: &[SortKey],
        offset: usize,
        limit: usize,
    ) -> Result<SearchPage, AdapterError> {
        self.page(queries, sort, PageStart::Offset(offset), limit)
    }

    fn search_after(
        &self,
        queries: &[Query],
        sort: &[SortKey],
        cursor: u64,
        limit: usize,
    ) -> Result<SearchPage, AdapterError> {
        let cursor = i64::try_from(cursor)
            .map_err(|_| AdapterError::BadRequest(format!("page[cursor]={cursor} is too large")))?;
        self.page(queries, sort, PageStart::After(cursor), limit)
    }

    fn distinct(&self, request: &DistinctRequest<'_>) -> Result<Distinct, AdapterError> {
        let c = &self.catalog;
        let dialect = c.dialect();
        let tally = |expr: &str| -> Result<Vec<DistinctValue>, AdapterError> {
            let mut s = c.sql();
            let parent = s.int(self.id);
            let mut conds = vec![format!("n.parent = {parent}")];
            for q in request.queries {
                conds.push(sql::condition(&mut s, q)?);
            }
            let text = format!(
                "SELECT {expr} AS v, count(*) FROM nodes n WHERE {} GROUP BY {expr}",
                conds.join(" AND ")
            );
            let mut conn = c.pool.get().map_err(AdapterError::from)?;
            let rows = conn.rows(&text, &s.params).map_err(AdapterError::from)?;
            let mut counted: Vec<(Value, usize)> = Vec::new();
            for r in &rows {
                let v = match r.opt_text(0)? {
                    None => Value::Null,
                    Some(t) => serde_json::from_str(t).unwrap_or_else(|_| Value::from(t)),
                };
                let n = r.int(1)? as usize;
                // Equal JSON written differently (1 vs 1.0) lands in one group.
                match counted.iter_mut().find(|(seen, _)| *seen == v) {
                    Some((_, m)) => *m += n,
                    None => counted.push((v, n)),
                }
            }
            counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| cmp_json(Some(&a.0), Some(&b.0))));
            Ok(counted
                .into_iter()
                .map(|(value, n)| DistinctValue {
                    value,
                    count: request.counts.then_some(n),
                })
                .collect())
        };
        let mut out = Distinct::default();
        if !request.metadata_keys.is_empty() {
            let mut map = serde_json::Map::new();
            for key in request.metadata_keys {
                let expr = sql::value_text(dialect, key)?;
                let list = serde_json::to_value(tally(&expr)?)
                    .map_err(|e| AdapterError::Internal(e.to_string()))?;
                map.insert(key.clone(), list);
            }
            out.metadata = Some(map);
        }
        if request.structure_families {
            // Plain text: quote it so it parses as a JSON string.
            let expr = match dialect {
                Dialect::Sqlite => "json_quote(n.structure_family)",
                Dialect::Postgres => "to_jsonb(n.structure_family)::text",
            };
            out.structure_families = Some(tally(expr)?);
        }
        if request.specs {
            out.specs = Some(tally(&c.t("n.specs"))?);
        }
        Ok(out)
    }
}

/// An array whose data source opens on first read.
pub struct CatalogArray {
    catalog: Arc<Catalog>,
    id: i64,
    structure: ArrayStructure,
    opened: OnceLock<Arc<dyn ArrayAdapter>>,
}

impl CatalogArray {
    fn inner(&self) -> Result<&Arc<dyn ArrayAdapter>, AdapterError> {
        if let Some(a) = self.opened.get() {
            return Ok(a);
        }
        let NodeData::Array(a) = self.catalog.open_data(self.id, StructureFamily::Array)? else {
            return Err(AdapterError::Internal(format!(
                "node {}: its data source is not an array",
                self.id
            )));
        };
        if a.structure().shape != self.structure.shape
            || a.structure().data_type != self.structure.data_type
        {
            return Err(AdapterError::Internal(format!(
                "node {}: the data no longer matches the catalog's structure",
                self.id
            )));
        }
        Ok(self.opened.get_or_init(|| a))
    }
}

impl ArrayAdapter for CatalogArray {
    fn structure(&self) -> &ArrayStructure {
        &self.structure
    }

    fn read_block(&self, block: &[usize]) -> Result<ArrayData, AdapterError> {
        self.inner()?.read_block(block)
    }

    fn read(&self, sel: &ResolvedSlice) -> Result<ArrayData, AdapterError> {
        self.inner()?.read(sel)
    }

    fn cheap_region_reads(&self) -> bool {
        self.inner().is_ok_and(|a| a.cheap_region_reads())
    }
}

/// A table whose data source opens on first read.
pub struct CatalogTable {
    catalog: Arc<Catalog>,
    id: i64,
    structure: TableStructure,
    opened: OnceLock<Arc<dyn TableAdapter>>,
}

impl CatalogTable {
    fn inner(&self) -> Result<&Arc<dyn TableAdapter>, AdapterError> {
        if let Some(t) = self.opened.get() {
            return Ok(t);
        }
        let NodeData::Table(t) = self.catalog.open_data(self.id, StructureFamily::Table)? else {
            return Err(AdapterError::Internal(format!(
                "node {}: its data source is not a table",
                self.id
            )));
        };
        Ok(self.opened.get_or_init(|| t))
    }
}

impl TableAdapter for CatalogTable {
    fn structure(&self) -> &TableStructure {
        &self.structure
    }

    fn schema(&self) -> SchemaRef {
        match self.inner() {
            Ok(t) => t.schema(),
            Err(_) => self
                .structure
                .schema()
                .unwrap_or_else(|_| Arc::new(arrow_schema::Schema::empty())),
        }
    }

    fn partition_rows(&self, partition: usize) -> Option<usize> {
        self.inner().ok()?.partition_rows(partition)
    }

    fn partition_bytes(&self, partition: usize, columns: Option<&[String]>) -> Option<usize> {
        self.inner().ok()?.partition_bytes(partition, columns)
    }

    fn read_partition(
        &self,
        partition: usize,
        columns: Option<&[String]>,
    ) -> Result<arrow_array::RecordBatch, AdapterError> {
        self.inner()?.read_partition(partition, columns)
    }

    fn column_array(&self, column: &str) -> Option<Arc<dyn ArrayAdapter>> {
        self.inner().ok()?.column_array(column)
    }
}
