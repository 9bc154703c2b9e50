//! Tiled's queries and sorts as SQL, per dialect.
//!
//! Values always travel as bound parameters. Metadata keys become part of
//! the SQL text (a JSON path literal) so that expression indexes can match;
//! they are checked against the strict grammar of
//! [`tiled_model::validate_key`] first, which admits no quote, bracket,
//! comma or backslash.
//!
//! The semantics are those of the in-memory matcher
//! (`tiled_adapters::search`): a node lacking the key matches none of `eq`,
//! `noteq`, `comparison`, `contains`, `in`, `notin` (except `notin []`);
//! numbers compare as numbers and only with numbers, strings as strings
//! (by code point); `like` is case-sensitive; `fulltext` needs every word.

use serde_json::Value;
use tiled_model::{CompareOp, Query};

use crate::CatalogError;
use crate::db::{Dialect, Param};

/// A fragment of SQL under construction with its parameters.
pub struct Sql {
    pub dialect: Dialect,
    pub params: Vec<Param>,
    /// Names of the metadata indexes that exist (`nodes_md_...`), so a
    /// condition can take the form an index serves best.
    pub indexes: std::sync::Arc<std::collections::HashSet<String>>,
}

/// How a PostgreSQL parameter (always sent as text) is cast.
#[derive(Clone, Copy)]
enum Cast {
    Int,
    Num,
    Text,
    Json,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Self {
        Sql {
            dialect,
            params: Vec::new(),
            indexes: Default::default(),
        }
    }

    /// A builder that knows which metadata indexes exist.
    pub fn with_indexes(
        dialect: Dialect,
        indexes: std::sync::Arc<std::collections::HashSet<String>>,
    ) -> Self {
        Sql {
            dialect,
            params: Vec::new(),
            indexes,
        }
    }

    fn bind(&mut self, p: Param, cast: Cast) -> String {
        self.params.push(p);
        let n = self.params.len();
        match self.dialect {
            Dialect::Sqlite => match cast {
                Cast::Json => format!("json(?{n})"),
                _ => format!("?{n}"),
            },
            Dialect::Postgres => match cast {
                Cast::Int => format!("${n}::text::bigint"),
                Cast::Num => format!("${n}::text::numeric"),
                Cast::Text => format!("${n}::text"),
                Cast::Json => format!("${n}::text::jsonb"),
            },
        }
    }

    /// Bind an integer.
    pub fn int(&mut self, v: i64) -> String {
        self.bind(Param::Int(v), Cast::Int)
    }

    /// Bind text.
    pub fn text(&mut self, v: &str) -> String {
        self.bind(Param::Text(v.to_string()), Cast::Text)
    }

    /// Bind a JSON document.
    pub fn json(&mut self, v: &Value) -> String {
        self.bind(Param::Text(v.to_string()), Cast::Json)
    }

    fn number(&mut self, n: &serde_json::Number) -> String {
        match self.dialect {
            Dialect::Sqlite => match n.as_i64() {
                Some(i) => self.bind(Param::Int(i), Cast::Num),
                None => self.bind(Param::Float(n.as_f64().unwrap_or(f64::NAN)), Cast::Num),
            },
            // numeric is exact for every JSON number.
            Dialect::Postgres => self.bind(Param::Text(n.to_string()), Cast::Num),
        }
    }
}

/// A validated metadata path, rendered for one dialect.
struct JsonPath {
    /// SQLite: `'$."a"."b"'`; PostgreSQL: `'{"a","b"}'`.
    literal: String,
}

fn json_path(dialect: Dialect, key: &str) -> Result<JsonPath, CatalogError> {
    let key = key.strip_prefix("metadata.").unwrap_or(key);
    tiled_model::query::validate_key(key).map_err(|e| CatalogError::BadRequest(e.to_string()))?;
    let segs: Vec<&str> = key.split('.').collect();
    let literal = match dialect {
        Dialect::Sqlite => format!(
            "'$.{}'",
            segs.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(".")
        ),
        Dialect::Postgres => format!(
            "'{{{}}}'",
            segs.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    Ok(JsonPath { literal })
}

/// `metadata` of the aliased node table.
const M: &str = "n.metadata";

fn present(d: Dialect, p: &JsonPath) -> String {
    match d {
        Dialect::Sqlite => format!("json_type({M}, {}) IS NOT NULL", p.literal),
        Dialect::Postgres => format!("({M} #> {}) IS NOT NULL", p.literal),
    }
}

fn type_is(d: Dialect, p: &JsonPath, sqlite: &[&str], pg: &str) -> String {
    match d {
        Dialect::Sqlite => {
            let list = sqlite
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("json_type({M}, {}) IN ({list})", p.literal)
        }
        Dialect::Postgres => format!("jsonb_typeof({M} #> {}) = '{pg}'", p.literal),
    }
}

/// A JSON document `{"a": {"b": value}}` for a dotted key.
fn nest(key: &str, value: Value) -> Value {
    let key = key.strip_prefix("metadata.").unwrap_or(key);
    key.rsplit('.').fold(value, |acc, seg| {
        let mut m = serde_json::Map::new();
        m.insert(seg.to_string(), acc);
        Value::Object(m)
    })
}

/// The value at `p` equals `value` (numbers by value).
fn equals(sql: &mut Sql, key: &str, p: &JsonPath, value: &Value) -> String {
    let d = sql.dialect;
    match d {
        Dialect::Sqlite => match value {
            Value::Null => type_is(d, p, &["null"], "null"),
            Value::Bool(true) => type_is(d, p, &["true"], ""),
            Value::Bool(false) => type_is(d, p, &["false"], ""),
            Value::Number(n) => {
                let v = sql.number(n);
                format!(
                    "({} AND json_extract({M}, {}) = {v})",
                    type_is(d, p, &["integer", "real"], ""),
                    p.literal
                )
            }
            Value::String(s) => {
                let v = sql.text(s);
                format!(
                    "({} AND json_extract({M}, {}) = {v})",
                    type_is(d, p, &["text"], ""),
                    p.literal
                )
            }
            Value::Array(_) | Value::Object(_) => {
                let v = sql.json(value);
                format!("({M} -> {}) = {v}", p.literal)
            }
        },
        Dialect::Postgres => {
            // Containment finds candidates through the GIN index; the
            // second test makes it exact for arrays and objects.
            let kind = match value {
                Value::Number(_) => Some("num"),
                Value::String(_) => Some("text"),
                _ => None,
            };
            let indexed = kind.is_some_and(|k| {
                sql.indexes
                    .contains(&format!("nodes_md_{}_{k}", index_name(key)))
            });
            match value {
                // With a metadata index on the key, the typed test alone is
                // exact for scalars and lets PostgreSQL answer (and count)
                // from that index without reading rows.
                Value::Number(n) if indexed => {
                    let v = sql.number(n);
                    format!("({} = {v})", typed_value(d, p, ValueType::Number))
                }
                Value::String(text) if indexed => {
                    let v = sql.text(text);
                    format!(
                        "({} = {v} COLLATE \"C\")",
                        typed_value(d, p, ValueType::Text)
                    )
                }
                Value::Array(_) | Value::Object(_) => {
                    let doc = sql.json(&nest(key, value.clone()));
                    let v = sql.json(value);
                    format!("({M} @> {doc} AND ({M} #> {}) = {v})", p.literal)
                }
                // Containment finds candidates through the GIN index.
                _ => {
                    let doc = sql.json(&nest(key, value.clone()));
                    format!("{M} @> {doc}")
                }
            }
        }
    }
}

/// One element `j` of a `json_each` (SQLite) equals `value`.
fn element_equals(sql: &mut Sql, value: &Value) -> String {
    match value {
        Value::Null => "j.type = 'null'".into(),
        Value::Bool(true) => "j.type = 'true'".into(),
        Value::Bool(false) => "j.type = 'false'".into(),
        Value::Number(n) => {
            let v = sql.number(n);
            format!("(j.type IN ('integer', 'real') AND j.value = {v})")
        }
        Value::String(s) => {
            let v = sql.text(s);
            format!("(j.type = 'text' AND j.value = {v})")
        }
        Value::Array(_) | Value::Object(_) => {
            let v = sql.json(value);
            format!("(j.type IN ('array', 'object') AND json(j.value) = {v})")
        }
    }
}

/// Words as the matcher splits them: runs of letters and digits, lowercased.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A LIKE pattern as an SQLite GLOB (which is case-sensitive).
fn like_to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '%' => out.push('*'),
            '_' => out.push('?'),
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// The WHERE condition for one query on the node aliased `n`.
///
/// # Errors
/// [`CatalogError::BadRequest`] for keys outside the grammar.
pub fn condition(sql: &mut Sql, q: &Query) -> Result<String, CatalogError> {
    let d = sql.dialect;
    Ok(match q {
        Query::Lookup { key } => format!("n.key = {}", sql.text(key)),
        Query::KeysFilter { keys } => {
            if keys.is_empty() {
                "1 = 0".into()
            } else {
                let list: Vec<String> = keys.iter().map(|k| sql.text(k)).collect();
                format!("n.key IN ({})", list.join(", "))
            }
        }
        Query::StructureFamily { value } => {
            format!("n.structure_family = {}", sql.text(value.as_str()))
        }
        Query::Eq { key, value } => {
            let p = json_path(d, key)?;
            equals(sql, key, &p, value)
        }
        Query::NotEq { key, value } => {
            let p = json_path(d, key)?;
            let eq = equals(sql, key, &p, value);
            // A typed comparison is NULL for other types: NOT must see false.
            format!("({} AND NOT coalesce({eq}, false))", present(d, &p))
        }
        Query::In { key, value } => {
            let p = json_path(d, key)?;
            if value.is_empty() {
                "1 = 0".into()
            } else {
                let any: Vec<String> = value.iter().map(|v| equals(sql, key, &p, v)).collect();
                format!("({})", any.join(" OR "))
            }
        }
        Query::NotIn { key, value } => {
            let p = json_path(d, key)?;
            if value.is_empty() {
                "1 = 1".into()
            } else {
                let any: Vec<String> = value.iter().map(|v| equals(sql, key, &p, v)).collect();
                format!(
                    "({} AND NOT coalesce(({}), false))",
                    present(d, &p),
                    any.join(" OR ")
                )
            }
        }
        Query::KeyPresent { key, exists } => {
            let p = json_path(d, key)?;
            if *exists {
                present(d, &p)
            } else {
                format!("NOT {}", present(d, &p))
            }
        }
        Query::Comparison {
            operator,
            key,
            value,
        } => {
            let p = json_path(d, key)?;
            let op = match operator {
                CompareOp::Lt => "<",
                CompareOp::Le => "<=",
                CompareOp::Gt => ">",
                CompareOp::Ge => ">=",
            };
            match (d, value) {
                (Dialect::Sqlite, Value::Number(n)) => {
                    let v = sql.number(n);
                    format!(
                        "({} AND {} {op} {v})",
                        type_is(d, &p, &["integer", "real"], ""),
                        typed_value(d, &p, ValueType::Number)
                    )
                }
                (Dialect::Sqlite, Value::String(s)) => {
                    let v = sql.text(s);
                    format!(
                        "({} AND {} {op} {v})",
                        type_is(d, &p, &["text"], ""),
                        typed_value(d, &p, ValueType::Text)
                    )
                }
                (Dialect::Postgres, Value::Number(n)) => {
                    let v = sql.number(n);
                    format!("{} {op} {v}", typed_value(d, &p, ValueType::Number))
                }
                (Dialect::Postgres, Value::String(s)) => {
                    let v = sql.text(s);
                    format!(
                        "{} {op} {v} COLLATE \"C\"",
                        typed_value(d, &p, ValueType::Text)
                    )
                }
                // Only numbers and strings are ordered.
                _ => "1 = 0".into(),
            }
        }
        Query::Contains { key, value } => {
            let p = json_path(d, key)?;
            match d {
                Dialect::Sqlite => {
                    let el = element_equals(sql, value);
                    format!(
                        "({} AND EXISTS (SELECT 1 FROM json_each({M}, {}) AS j WHERE {el}))",
                        type_is(d, &p, &["array"], ""),
                        p.literal
                    )
                }
                Dialect::Postgres => {
                    let doc = sql.json(&nest(key, Value::Array(vec![value.clone()])));
                    format!("({} AND {M} @> {doc})", type_is(d, &p, &[], "array"))
                }
            }
        }
        Query::Like { key, pattern } => {
            let p = json_path(d, key)?;
            match d {
                Dialect::Sqlite => {
                    let v = sql.text(&like_to_glob(pattern));
                    format!(
                        "({} AND json_extract({M}, {}) GLOB {v})",
                        type_is(d, &p, &["text"], ""),
                        p.literal
                    )
                }
                Dialect::Postgres => {
                    let v = sql.text(pattern);
                    format!(
                        "(CASE WHEN jsonb_typeof({M} #> {l}) = 'string' THEN ({M} #>> {l}) END) LIKE {v} ESCAPE ''",
                        l = p.literal
                    )
                }
            }
        }
        Query::Regex {
            key,
            pattern,
            case_sensitive,
        } => {
            let p = json_path(d, key)?;
            match d {
                Dialect::Sqlite => {
                    let source = if *case_sensitive {
                        pattern.as_str().to_string()
                    } else {
                        format!("(?i){}", pattern.as_str())
                    };
                    let v = sql.text(&source);
                    format!(
                        "({} AND regexp({v}, json_extract({M}, {})))",
                        type_is(d, &p, &["text"], ""),
                        p.literal
                    )
                }
                Dialect::Postgres => {
                    let v = sql.text(pattern.as_str());
                    let op = if *case_sensitive { "~" } else { "~*" };
                    format!(
                        "(CASE WHEN jsonb_typeof({M} #> {l}) = 'string' THEN ({M} #>> {l}) END) {op} {v}",
                        l = p.literal
                    )
                }
            }
        }
        Query::FullText { text } => {
            let ws = words(text);
            if ws.is_empty() {
                "1 = 0".into()
            } else {
                match d {
                    Dialect::Sqlite => {
                        // Each word a quoted FTS5 string; juxtaposed = AND.
                        let q = ws
                            .iter()
                            .map(|w| format!("\"{w}\""))
                            .collect::<Vec<_>>()
                            .join(" ");
                        let v = sql.text(&q);
                        format!("n.id IN (SELECT rowid FROM nodes_fts WHERE nodes_fts MATCH {v})")
                    }
                    Dialect::Postgres => {
                        let v = sql.text(&ws.join(" "));
                        format!("n.fts @@ plainto_tsquery('simple', {v})")
                    }
                }
            }
        }
        Query::Specs { include, exclude } => {
            let mut parts = Vec::new();
            for (names, negate) in [(include, false), (exclude, true)] {
                for name in names {
                    let cond = match d {
                        Dialect::Sqlite => {
                            let v = sql.text(name);
                            format!(
                                "EXISTS (SELECT 1 FROM json_each(n.specs) AS j WHERE json_extract(j.value, '$.name') = {v})"
                            )
                        }
                        Dialect::Postgres => {
                            let v = sql.json(&serde_json::json!([{ "name": name }]));
                            format!("n.specs @> {v}")
                        }
                    };
                    parts.push(if negate { format!("NOT {cond}") } else { cond });
                }
            }
            if parts.is_empty() {
                "1 = 1".into()
            } else {
                format!("({})", parts.join(" AND "))
            }
        }
        Query::Visible { tags } => {
            let untagged = match d {
                Dialect::Sqlite => {
                    "COALESCE(json_array_length(n.access_blob, '$.tags'), 0) = 0".to_string()
                }
                Dialect::Postgres => "COALESCE(jsonb_array_length(CASE WHEN jsonb_typeof(n.access_blob -> 'tags') = 'array' THEN n.access_blob -> 'tags' END), 0) = 0".to_string(),
            };
            let tagged = condition(sql, &Query::AccessTags { tags: tags.clone() })?;
            format!("({untagged} OR {tagged})")
        }
        Query::AccessTags { tags } => {
            if tags.is_empty() {
                "1 = 0".into()
            } else {
                let any: Vec<String> = tags
                    .iter()
                    .map(|t| match d {
                        Dialect::Sqlite => {
                            let v = sql.text(t);
                            format!(
                                "EXISTS (SELECT 1 FROM json_each(n.access_blob, '$.tags') AS j WHERE j.value = {v})"
                            )
                        }
                        Dialect::Postgres => {
                            let v = sql.json(&serde_json::json!({ "tags": [t] }));
                            format!("n.access_blob @> {v}")
                        }
                    })
                    .collect();
                format!("({})", any.join(" OR "))
            }
        }
    })
}

/// What type of values a metadata index serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Number,
    Text,
}

/// The expression comparisons of one type evaluate (and indexes store):
/// SQLite's `json_extract`, PostgreSQL's typed `CASE`.
fn typed_value(d: Dialect, p: &JsonPath, t: ValueType) -> String {
    let l = &p.literal;
    match (d, t) {
        (Dialect::Sqlite, _) => format!("json_extract({M}, {l})"),
        (Dialect::Postgres, ValueType::Number) => format!(
            "(CASE WHEN jsonb_typeof({M} #> {l}) = 'number' THEN ({M} #>> {l})::numeric END)"
        ),
        (Dialect::Postgres, ValueType::Text) => format!(
            "((CASE WHEN jsonb_typeof({M} #> {l}) = 'string' THEN ({M} #>> {l}) END) COLLATE \"C\")"
        ),
    }
}

/// The part of a metadata index's name that identifies its key.
pub fn index_name(key: &str) -> String {
    let key = key.strip_prefix("metadata.").unwrap_or(key);
    let slug: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes()) & 0xffff_ffff;
    format!("{slug}_{hash:08x}")
}

/// `CREATE INDEX` statements that make filters (`eq`, `comparison`) and
/// sorts on `key` index scans within a container. The expressions are the
/// ones [`condition`] and [`order_terms`] generate, so the planner matches
/// them.
///
/// # Errors
/// [`CatalogError::BadRequest`] for keys outside the grammar.
pub fn index_statements(
    dialect: Dialect,
    key: &str,
    t: ValueType,
    then_sort_by: Option<&str>,
) -> Result<Vec<String>, CatalogError> {
    let p = json_path(dialect, key)?;
    let bare = |e: String| e.replace(M, "metadata");
    let name = index_name;
    let kind = match t {
        ValueType::Number => "num",
        ValueType::Text => "text",
    };
    // PostgreSQL wants each index expression in parentheses.
    let wrap = |e: String| match dialect {
        Dialect::Sqlite => e,
        Dialect::Postgres => format!("({e})"),
    };
    let mut filter = wrap(bare(typed_value(dialect, &p, t)));
    if dialect == Dialect::Sqlite {
        // The type test of every condition, stored in the index too: SQLite
        // then answers `json_type(..) IN (..) AND json_extract(..) = ?`
        // (and counts) from the index alone, without parsing the metadata
        // of each candidate row.
        filter = format!(
            "{filter}, {}",
            bare(format!("json_type({M}, {})", p.literal))
        );
    }
    let sort_of = |key: &str| -> Result<Vec<String>, CatalogError> {
        Ok(order_terms(dialect, key, false)?
            .into_iter()
            .map(|term| wrap(bare(term.trim_end_matches(" ASC").to_string())))
            .collect())
    };
    let a = name(key);
    let mut out = vec![
        format!("CREATE INDEX IF NOT EXISTS nodes_md_{a}_{kind} ON nodes (parent, {filter})"),
        format!(
            "CREATE INDEX IF NOT EXISTS nodes_md_{a}_sort ON nodes (parent, {})",
            sort_of(key)?.join(", ")
        ),
    ];
    if let Some(then) = then_sort_by {
        // Equality on `key`, then ordered by `then`: "the newest run of
        // this beamline" reads one index entry.
        out.push(format!(
            "CREATE INDEX IF NOT EXISTS nodes_md_{a}_{kind}_by_{} ON nodes (parent, {filter}, {})",
            name(then),
            sort_of(then)?.join(", ")
        ));
    }
    Ok(out)
}

/// ORDER BY terms for one sort key (`""`: insertion order, `id`: the
/// child key, else a metadata path). Mixed types order as the matcher
/// does: null, booleans, numbers, strings, arrays, objects, then missing.
///
/// # Errors
/// [`CatalogError::BadRequest`] for keys outside the grammar.
pub fn order_terms(
    dialect: Dialect,
    key: &str,
    descending: bool,
) -> Result<Vec<String>, CatalogError> {
    let dir = if descending { "DESC" } else { "ASC" };
    Ok(order_exprs(dialect, key)?
        .into_iter()
        .map(|e| format!("{e} {dir}"))
        .collect())
}

/// The expressions [`order_terms`] sorts by, without a direction (node
/// alias `n`); keyset pagination compares them with the cursor row's.
///
/// # Errors
/// [`CatalogError::BadRequest`] for keys outside the grammar.
pub fn order_exprs(dialect: Dialect, key: &str) -> Result<Vec<String>, CatalogError> {
    if key.is_empty() {
        return Ok(vec![ID_ORDER.into()]);
    }
    if key == "id" {
        return Ok(vec![match dialect {
            Dialect::Sqlite => "n.key".into(),
            Dialect::Postgres => "n.key COLLATE \"C\"".into(),
        }]);
    }
    let p = json_path(dialect, key)?;
    let l = &p.literal;
    Ok(match dialect {
        Dialect::Sqlite => vec![
            format!(
                "CASE json_type({M}, {l}) WHEN 'null' THEN 0 WHEN 'true' THEN 1 WHEN 'false' THEN 1 \
                 WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 WHEN 'array' THEN 4 \
                 WHEN 'object' THEN 5 ELSE 6 END"
            ),
            format!("json_extract({M}, {l})"),
        ],
        Dialect::Postgres => vec![
            format!(
                "CASE jsonb_typeof({M} #> {l}) WHEN 'null' THEN 0 WHEN 'boolean' THEN 1 \
                 WHEN 'number' THEN 2 WHEN 'string' THEN 3 WHEN 'array' THEN 4 \
                 WHEN 'object' THEN 5 ELSE 6 END"
            ),
            format!(
                "CASE WHEN jsonb_typeof({M} #> {l}) = 'number' THEN ({M} #>> {l})::numeric END"
            ),
            format!("({M} #>> {l}) COLLATE \"C\""),
        ],
    })
}

/// The default order: insertion order, which is node-id order.
pub const ID_ORDER: &str = "n.id";

/// A condition true for the rows that come strictly after the row with id
/// `cursor` in the order `terms` (expression, descending) followed by id
/// ascending: keyset pagination. The cursor row's own values are looked up
/// in subqueries so the cursor can stay an opaque id.
pub fn after_cursor(s: &mut Sql, terms: &[(String, bool)], cursor: i64) -> String {
    let id = s.int(cursor);
    let mut terms: Vec<(String, bool)> = terms.to_vec();
    if terms.last().is_none_or(|(e, _)| e != ID_ORDER) {
        terms.push((ID_ORDER.into(), false));
    }
    let same = match s.dialect {
        Dialect::Sqlite => "IS",
        Dialect::Postgres => "IS NOT DISTINCT FROM",
    };
    let value = |e: &str| {
        if e == ID_ORDER {
            id.clone()
        } else {
            format!("(SELECT {e} FROM nodes n WHERE n.id = {id})")
        }
    };
    let mut alternatives = Vec::new();
    for (i, (e, descending)) in terms.iter().enumerate() {
        let mut parts: Vec<String> = terms[..i]
            .iter()
            .map(|(prev, _)| format!("{prev} {same} {}", value(prev)))
            .collect();
        let op = if *descending { "<" } else { ">" };
        parts.push(format!("{e} {op} {}", value(e)));
        alternatives.push(format!("({})", parts.join(" AND ")));
    }
    format!("({})", alternatives.join(" OR "))
}

/// The JSON text of the value at `key` (NULL when missing), for distinct.
///
/// # Errors
/// [`CatalogError::BadRequest`] for keys outside the grammar.
pub fn value_text(dialect: Dialect, key: &str) -> Result<String, CatalogError> {
    let p = json_path(dialect, key)?;
    Ok(match dialect {
        Dialect::Sqlite => format!("({M} -> {})", p.literal),
        Dialect::Postgres => format!("({M} #> {})::text", p.literal),
    })
}

/// Every string in a JSON value, space-separated: the full-text document.
pub fn strings_of(v: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(m) => m.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_literals_and_values_parameters() {
        let mut s = Sql::new(Dialect::Sqlite);
        let q = Query::Eq {
            key: "sample.color".into(),
            value: Value::from("red'; DROP TABLE nodes; --"),
        };
        let c = condition(&mut s, &q).unwrap();
        assert!(c.contains("'$.\"sample\".\"color\"'"), "{c}");
        assert!(!c.contains("DROP"));
        assert_eq!(s.params.len(), 1);
        let bad = Query::Eq {
            key: "a'b".into(),
            value: Value::Null,
        };
        assert!(matches!(
            condition(&mut Sql::new(Dialect::Postgres), &bad),
            Err(CatalogError::BadRequest(_))
        ));
        assert_eq!(like_to_glob("a%b_[*]"), "a*b?[[][*]]");
    }
}
