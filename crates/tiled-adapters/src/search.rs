//! Evaluating queries against in-memory nodes, and the ordering of JSON
//! values used for sorting.
//!
//! Semantics (the same the SQL catalog implements, and documented in
//! `docs/compatibility.md`): a node lacking the key matches none of `eq`,
//! `noteq`, `comparison`, `contains`, `in`, `notin` (except `notin` with an
//! empty list, which matches everything); numbers compare as numbers
//! (`1 == 1.0`, `2 < 10`); `like` is case-sensitive; `fulltext` needs every
//! word of the text to appear, case-insensitively, as a word of some string
//! in the metadata.

use std::cmp::Ordering;

use serde_json::Value;
use tiled_model::{CompareOp, Query};

use crate::node::{Metadata, Node};

/// Walk a dotted path (`nested.x`) into a metadata object.
pub fn lookup_path<'a>(metadata: &'a Metadata, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = metadata.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn cmp_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Ordering {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => match (a.as_u64(), b.as_u64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                );
                x.total_cmp(&y)
            }
        },
    }
}

/// A total order on optional JSON values: null < bool < number < string <
/// array < object < missing; numbers numerically, strings by code point,
/// arrays element-wise. Missing sorts last ascending (first descending),
/// like SQL's default NULLS LAST.
pub fn cmp_json(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => match (a, b) {
            (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
            (Value::String(x), Value::String(y)) => x.cmp(y),
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            (Value::Array(x), Value::Array(y)) => {
                for (p, q) in x.iter().zip(y) {
                    let o = cmp_json(Some(p), Some(q));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                x.len().cmp(&y.len())
            }
            (Value::Object(x), Value::Object(y)) => Value::Object(x.clone())
                .to_string()
                .cmp(&Value::Object(y.clone()).to_string()),
            _ => type_rank(a).cmp(&type_rank(b)),
        },
    }
}

/// JSON equality with numbers compared by value (`1 == 1.0`).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// Translate a SQL LIKE pattern into an anchored regex.
fn like_to_regex(pattern: &str) -> Option<regex::Regex> {
    let mut re = String::from("(?s)^");
    for c in pattern.chars() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).ok()
}

/// A query prepared for evaluating against many nodes (patterns compiled
/// once).
pub struct Matcher<'q> {
    query: &'q Query,
    like: Option<regex::Regex>,
    fulltext_words: Vec<String>,
}

impl<'q> Matcher<'q> {
    /// Prepare `query`.
    pub fn new(query: &'q Query) -> Self {
        Matcher {
            query,
            like: match query {
                Query::Like { pattern, .. } => like_to_regex(pattern),
                _ => None,
            },
            fulltext_words: match query {
                Query::FullText { text } => words(text).collect(),
                _ => Vec::new(),
            },
        }
    }

    /// Whether the child `key` with `node` satisfies the query.
    pub fn matches(&self, key: &str, node: &Node) -> bool {
        let md = &node.metadata;
        match self.query {
            Query::FullText { .. } => {
                let mut strings = Vec::new();
                for v in md.values() {
                    collect_strings(v, &mut strings);
                }
                let present: std::collections::HashSet<String> =
                    strings.iter().flat_map(|s| words(s)).collect();
                !self.fulltext_words.is_empty()
                    && self.fulltext_words.iter().all(|w| present.contains(w))
            }
            Query::Lookup { key: k } => k == key,
            Query::KeysFilter { keys } => keys.iter().any(|k| k == key),
            Query::Regex {
                key: path, pattern, ..
            } => matches!(lookup_path(md, path), Some(Value::String(s)) if pattern.is_match(s)),
            Query::Eq { key: path, value } => {
                lookup_path(md, path).is_some_and(|v| json_eq(v, value))
            }
            Query::NotEq { key: path, value } => {
                lookup_path(md, path).is_some_and(|v| !json_eq(v, value))
            }
            Query::Comparison {
                operator,
                key: path,
                value,
            } => lookup_path(md, path).is_some_and(|v| {
                // Only like-typed values are ordered against each other.
                if type_rank(v) != type_rank(value)
                    || !matches!(v, Value::Number(_) | Value::String(_))
                {
                    return false;
                }
                let o = cmp_json(Some(v), Some(value));
                match operator {
                    CompareOp::Lt => o == Ordering::Less,
                    CompareOp::Le => o != Ordering::Greater,
                    CompareOp::Gt => o == Ordering::Greater,
                    CompareOp::Ge => o != Ordering::Less,
                }
            }),
            Query::Contains { key: path, value } => matches!(
                lookup_path(md, path),
                Some(Value::Array(items)) if items.iter().any(|i| json_eq(i, value))
            ),
            Query::In { key: path, value } => {
                lookup_path(md, path).is_some_and(|v| value.iter().any(|w| json_eq(v, w)))
            }
            Query::NotIn { key: path, value } => {
                value.is_empty()
                    || lookup_path(md, path).is_some_and(|v| !value.iter().any(|w| json_eq(v, w)))
            }
            Query::KeyPresent { key: path, exists } => lookup_path(md, path).is_some() == *exists,
            Query::Like { key: path, .. } => match (&self.like, lookup_path(md, path)) {
                (Some(re), Some(Value::String(s))) => re.is_match(s),
                _ => false,
            },
            Query::Specs { include, exclude } => {
                include
                    .iter()
                    .all(|n| node.specs.iter().any(|s| &s.name == n))
                    && !exclude
                        .iter()
                        .any(|n| node.specs.iter().any(|s| &s.name == n))
            }
            Query::StructureFamily { value } => node.family() == *value,
            Query::AccessTags { tags } => tags.iter().any(|t| node.access_tags.contains(t)),
            Query::Visible { tags } => {
                node.access_tags.is_empty() || tags.iter().any(|t| node.access_tags.contains(t))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryContainer, node::ContainerAdapter, node::SortKey};
    use serde_json::json;

    fn tree() -> MemoryContainer {
        let rows = [
            (
                "a",
                json!({"n": 10, "color": "red", "tags": ["x"], "d": {"k": 1}, "t": "Red fox"}),
            ),
            (
                "b",
                json!({"n": 2, "color": "blue", "tags": ["y", "x"], "t": "blue whale"}),
            ),
            ("c", json!({"n": 2.5, "color": "Red", "d": {"k": 2}})),
            ("d", json!({"color": "green"})),
        ];
        MemoryContainer::new(rows.into_iter().map(|(k, md)| {
            (
                k.to_string(),
                Node::container(MemoryContainer::default()).with_metadata(md),
            )
        }))
    }

    fn keys(c: &MemoryContainer, pairs: &[(&str, &str)]) -> Vec<String> {
        let q = Query::parse_params(pairs.iter().copied()).unwrap();
        c.search(&q, &[], 0, 100)
            .unwrap()
            .entries
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn semantics() {
        let c = tree();
        let eq = |k: &str, v: &str| {
            vec![
                ("filter[eq][condition][key]", k.to_string()),
                ("filter[eq][condition][value]", v.to_string()),
            ]
        };
        let run = |pairs: Vec<(&str, String)>| {
            let p: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (*a, b.as_str())).collect();
            keys(&c, &p)
        };
        assert_eq!(run(eq("color", "\"red\"")), vec!["a"]);
        assert_eq!(run(eq("n", "2.0")), vec!["b"]);
        assert_eq!(run(eq("d.k", "2")), vec!["c"]);
        assert_eq!(
            keys(
                &c,
                &[
                    ("filter[comparison][condition][operator]", "gt"),
                    ("filter[comparison][condition][key]", "n"),
                    ("filter[comparison][condition][value]", "2")
                ]
            ),
            vec!["a", "c"]
        );
        assert_eq!(
            keys(
                &c,
                &[
                    ("filter[noteq][condition][key]", "n"),
                    ("filter[noteq][condition][value]", "2")
                ]
            ),
            vec!["a", "c"]
        );
        assert_eq!(
            keys(
                &c,
                &[
                    ("filter[notin][condition][key]", "n"),
                    ("filter[notin][condition][value]", "[]")
                ]
            ),
            vec!["a", "b", "c", "d"]
        );
        assert_eq!(
            keys(
                &c,
                &[
                    ("filter[contains][condition][key]", "tags"),
                    ("filter[contains][condition][value]", "\"x\"")
                ]
            ),
            vec!["a", "b"]
        );
        assert_eq!(
            keys(
                &c,
                &[
                    ("filter[like][condition][key]", "color"),
                    ("filter[like][condition][pattern]", "\"R%\"")
                ]
            ),
            vec!["c"]
        );
        assert_eq!(
            keys(&c, &[("filter[fulltext][condition][text]", "RED")]),
            vec!["a", "c"]
        );
        assert_eq!(
            keys(&c, &[("filter[fulltext][condition][text]", "red fox")]),
            vec!["a"]
        );
        assert_eq!(
            keys(
                &c,
                &[
                    ("filter[regex][condition][key]", "color"),
                    ("filter[regex][condition][pattern]", "^r"),
                    ("filter[regex][condition][case_sensitive]", "false")
                ]
            ),
            vec!["a", "c"]
        );
        assert_eq!(
            keys(
                &c,
                &[
                    ("filter[keypresent][condition][key]", "d.k"),
                    ("filter[keypresent][condition][exists]", "false")
                ]
            ),
            vec!["b", "d"]
        );
    }

    #[test]
    fn numbers_sort_numerically_and_missing_last() {
        let c = tree();
        let sort = [SortKey {
            key: "n".into(),
            descending: false,
        }];
        let got: Vec<String> = c
            .search(&[], &sort, 0, 10)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(got, vec!["b", "c", "a", "d"]);
        let sort = [SortKey {
            key: "".into(),
            descending: true,
        }];
        let got: Vec<String> = c
            .search(&[], &sort, 1, 2)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(got, vec!["c", "b"]);
    }
}
