//! Search queries, parsed from Tiled's `filter[{name}][condition][{field}]`
//! query parameters.
//!
//! Several queries of one type arrive as repeated parameters and are zipped
//! by position: the n-th `filter[eq][condition][key]` goes with the n-th
//! `filter[eq][condition][value]`. Values are JSON (as Python's `json.dumps`
//! writes them), except `regex.pattern`, `fulltext.text` and the `key`
//! fields, which are plain text. Unknown query names are ignored, as
//! upstream does; a known query missing a field is a caller error (upstream
//! answers 500 there).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{ModelError, StructureFamily};

/// Ordered comparison operators of the `comparison` query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Lt,
    Gt,
    Le,
    Ge,
}

/// One search condition.
#[derive(Clone, Debug)]
pub enum Query {
    /// Case-insensitive word match against any string in the metadata.
    FullText {
        text: String,
    },
    /// Exactly this child key.
    Lookup {
        key: String,
    },
    /// Child key is one of these.
    KeysFilter {
        keys: Vec<String>,
    },
    /// Regular-expression search on the string at a metadata key.
    Regex {
        key: String,
        pattern: regex::Regex,
        case_sensitive: bool,
    },
    Eq {
        key: String,
        value: Value,
    },
    NotEq {
        key: String,
        value: Value,
    },
    Comparison {
        operator: CompareOp,
        key: String,
        value: Value,
    },
    /// The list at `key` contains `value`.
    Contains {
        key: String,
        value: Value,
    },
    In {
        key: String,
        value: Vec<Value>,
    },
    NotIn {
        key: String,
        value: Vec<Value>,
    },
    KeyPresent {
        key: String,
        exists: bool,
    },
    /// SQL `LIKE` (`%` any run, `_` one character), case-sensitive.
    Like {
        key: String,
        pattern: String,
    },
    /// Has every spec in `include` and none in `exclude` (by name).
    Specs {
        include: Vec<String>,
        exclude: Vec<String>,
    },
    StructureFamily {
        value: StructureFamily,
    },
    /// Carries any of these access tags.
    AccessTags {
        tags: Vec<String>,
    },
    /// Visible under an access policy: carries one of these tags, or no
    /// tags at all (then it inherits its parent's visibility, which the
    /// caller has already passed). Made by the server, never parsed from a
    /// request.
    Visible {
        tags: Vec<String>,
    },
}

/// The query names this crate understands, as the about document lists them.
pub const QUERY_NAMES: [&str; 15] = [
    "fulltext",
    "lookup",
    "keys_filter",
    "regex",
    "eq",
    "noteq",
    "comparison",
    "contains",
    "in",
    "notin",
    "keypresent",
    "like",
    "specs",
    "access_tags_filter",
    "structure_family",
];

impl Query {
    /// Parse every `filter[...]` parameter among `params` (others are ignored).
    ///
    /// # Errors
    /// [`ModelError::InvalidQuery`] when a known query has a missing or
    /// malformed field.
    pub fn parse_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vec<Query>, ModelError> {
        // name -> field -> values in order of appearance
        let mut grouped: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
        let mut order: Vec<&str> = Vec::new();
        for (name, value) in params {
            let Some(rest) = name.strip_prefix("filter[") else {
                continue;
            };
            let Some((qname, rest)) = rest.split_once("][condition][") else {
                continue;
            };
            let Some(field) = rest.strip_suffix(']') else {
                continue;
            };
            if !QUERY_NAMES.contains(&qname) {
                continue;
            }
            if !order.contains(&qname) {
                order.push(qname);
            }
            grouped
                .entry(qname)
                .or_default()
                .entry(field)
                .or_default()
                .push(value);
        }
        let mut queries = Vec::new();
        for qname in order {
            let fields = &grouped[qname];
            let n = fields.values().map(Vec::len).max().unwrap_or(0);
            for i in 0..n {
                queries.push(build(qname, fields, i)?);
            }
        }
        Ok(queries)
    }
}

fn build(name: &str, fields: &BTreeMap<&str, Vec<&str>>, i: usize) -> Result<Query, ModelError> {
    let get = |f: &str| -> Option<&str> { fields.get(f).and_then(|v| v.get(i)).copied() };
    let need = |f: &str| {
        get(f).ok_or_else(|| ModelError::InvalidQuery(format!("filter[{name}] is missing '{f}'")))
    };
    let key = || -> Result<String, ModelError> {
        let k = need("key")?;
        validate_key(k)?;
        Ok(k.to_string())
    };
    let json = |f: &str| -> Result<Value, ModelError> { Ok(lenient_json(need(f)?)) };
    let list = |f: &str| -> Result<Vec<Value>, ModelError> {
        match json(f)? {
            Value::Array(v) => Ok(v),
            other => Err(ModelError::InvalidQuery(format!(
                "filter[{name}][condition][{f}] must be a JSON list, got {other}"
            ))),
        }
    };
    let strings = |f: &str| -> Result<Vec<String>, ModelError> {
        list(f)?
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(ModelError::InvalidQuery(format!(
                    "filter[{name}][condition][{f}] must hold strings, got {other}"
                ))),
            })
            .collect()
    };
    let boolean = |f: &str, default: Option<bool>| -> Result<bool, ModelError> {
        match get(f) {
            None => default.ok_or_else(|| {
                ModelError::InvalidQuery(format!("filter[{name}] is missing '{f}'"))
            }),
            Some(v) => parse_bool(v).ok_or_else(|| {
                ModelError::InvalidQuery(format!(
                    "filter[{name}][condition][{f}] must be true or false, got {v:?}"
                ))
            }),
        }
    };
    Ok(match name {
        "fulltext" => Query::FullText {
            text: need("text")?.to_string(),
        },
        "lookup" => Query::Lookup {
            key: need("key")?.to_string(),
        },
        "keys_filter" => Query::KeysFilter {
            keys: strings("keys")?,
        },
        "regex" => {
            let case_sensitive = boolean("case_sensitive", Some(true))?;
            let pattern = need("pattern")?;
            let regex = regex::RegexBuilder::new(pattern)
                .case_insensitive(!case_sensitive)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| ModelError::InvalidQuery(format!("invalid regex: {e}")))?;
            Query::Regex {
                key: key()?,
                pattern: regex,
                case_sensitive,
            }
        }
        "eq" => Query::Eq {
            key: key()?,
            value: json("value")?,
        },
        "noteq" => Query::NotEq {
            key: key()?,
            value: json("value")?,
        },
        "comparison" => {
            let operator = match need("operator")? {
                "lt" => CompareOp::Lt,
                "gt" => CompareOp::Gt,
                "le" => CompareOp::Le,
                "ge" => CompareOp::Ge,
                other => {
                    return Err(ModelError::InvalidParameter(format!(
                        "comparison operator must be lt, gt, le or ge, got {other:?}"
                    )));
                }
            };
            Query::Comparison {
                operator,
                key: key()?,
                value: json("value")?,
            }
        }
        "contains" => Query::Contains {
            key: key()?,
            value: json("value")?,
        },
        "in" => Query::In {
            key: key()?,
            value: list("value")?,
        },
        "notin" => Query::NotIn {
            key: key()?,
            value: list("value")?,
        },
        "keypresent" => Query::KeyPresent {
            key: key()?,
            exists: boolean("exists", Some(true))?,
        },
        "like" => {
            let pattern = match lenient_json(need("pattern")?) {
                Value::String(s) => s,
                other => other.to_string(),
            };
            Query::Like {
                key: key()?,
                pattern,
            }
        }
        "specs" => Query::Specs {
            include: if get("include").is_some() {
                strings("include")?
            } else {
                Vec::new()
            },
            exclude: if get("exclude").is_some() {
                strings("exclude")?
            } else {
                Vec::new()
            },
        },
        "structure_family" => Query::StructureFamily {
            value: StructureFamily::parse(lenient_json(need("value")?).as_str().unwrap_or(""))?,
        },
        "access_tags_filter" => Query::AccessTags {
            tags: strings("tags")?,
        },
        other => {
            return Err(ModelError::InvalidQuery(format!(
                "unknown query type {other:?}"
            )));
        }
    })
}

/// JSON if it parses, else the text as a JSON string (friendly to `curl`
/// users who write `value=red`; the Python client always sends JSON).
fn lenient_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// FastAPI's boolean spellings.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// Metadata keys are dotted paths of identifiers-ish segments: letters,
/// digits, `_`, `-`, `:`, `@`, with an optional `metadata.` prefix accepted
/// elsewhere. The strict grammar keeps keys safe to carry into any backend.
///
/// # Errors
/// [`ModelError::InvalidQuery`] if the key is empty or has other characters.
pub fn validate_key(key: &str) -> Result<(), ModelError> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && key.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '@' | ' '))
        });
    if ok {
        Ok(())
    } else {
        Err(ModelError::InvalidQuery(format!(
            "invalid metadata key {key:?}: use dot-separated names of letters, digits, '_', '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Vec<Query>, ModelError> {
        Query::parse_params(pairs.iter().copied())
    }

    #[test]
    fn zips_repeated_params_by_position() {
        let q = parse(&[
            ("filter[eq][condition][key]", "color"),
            ("filter[eq][condition][value]", "\"red\""),
            ("filter[eq][condition][key]", "nested.x"),
            ("filter[eq][condition][value]", "3"),
            ("page[offset]", "0"),
        ])
        .unwrap();
        assert_eq!(q.len(), 2);
        match &q[1] {
            Query::Eq { key, value } => {
                assert_eq!(key, "nested.x");
                assert_eq!(value, &serde_json::json!(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_type_parses_from_the_client_encoding() {
        let q = parse(&[
            ("filter[fulltext][condition][text]", "red sample"),
            ("filter[lookup][condition][key]", "item_0001"),
            ("filter[keys_filter][condition][keys]", "[\"a\", \"b\"]"),
            ("filter[regex][condition][key]", "name"),
            ("filter[regex][condition][pattern]", "^item 1"),
            ("filter[regex][condition][case_sensitive]", "false"),
            ("filter[noteq][condition][key]", "color"),
            ("filter[noteq][condition][value]", "\"red\""),
            ("filter[comparison][condition][operator]", "gt"),
            ("filter[comparison][condition][key]", "score"),
            ("filter[comparison][condition][value]", "2.5"),
            ("filter[contains][condition][key]", "tags"),
            ("filter[contains][condition][value]", "\"fizz\""),
            ("filter[in][condition][key]", "group"),
            ("filter[in][condition][value]", "[1, 2]"),
            ("filter[notin][condition][key]", "group"),
            ("filter[notin][condition][value]", "[]"),
            ("filter[keypresent][condition][key]", "optional"),
            ("filter[keypresent][condition][exists]", "false"),
            ("filter[like][condition][key]", "name"),
            ("filter[like][condition][pattern]", "\"item 1%\""),
            ("filter[specs][condition][include]", "[\"quad\"]"),
            ("filter[specs][condition][exclude]", "[]"),
            ("filter[structure_family][condition][value]", "array"),
            ("filter[access_tags_filter][condition][tags]", "[\"x\"]"),
            ("filter[unknown][condition][x]", "ignored"),
        ])
        .unwrap();
        assert_eq!(q.len(), 14);
        assert!(matches!(&q[9], Query::KeyPresent { exists: false, .. }));
        assert!(matches!(&q[10], Query::Like { pattern, .. } if pattern == "item 1%"));
    }

    #[test]
    fn caller_mistakes_are_errors() {
        for pairs in [
            vec![("filter[eq][condition][key]", "color")],
            vec![
                ("filter[comparison][condition][operator]", "between"),
                ("filter[comparison][condition][key]", "a"),
                ("filter[comparison][condition][value]", "1"),
            ],
            vec![
                ("filter[in][condition][key]", "a"),
                ("filter[in][condition][value]", "3"),
            ],
            vec![
                ("filter[regex][condition][key]", "a"),
                ("filter[regex][condition][pattern]", "("),
            ],
            vec![
                ("filter[eq][condition][key]", "a;drop"),
                ("filter[eq][condition][value]", "1"),
            ],
            vec![("filter[structure_family][condition][value]", "blob")],
        ] {
            assert!(parse(&pairs).is_err(), "{pairs:?}");
        }
    }
}
