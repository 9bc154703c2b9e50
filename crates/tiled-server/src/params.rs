//! Query-string access: repeated keys, bracketed names (`page[offset]`) and
//! FastAPI-style booleans, read from the raw pairs.

use tiled_model::query::parse_bool;

use crate::error::ApiError;

/// The decoded `name=value` pairs of a query string, in order.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Decode a raw query string.
    pub fn parse(query: Option<&str>) -> Self {
        Params(
            query
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether `name` appears at all (even with an empty value).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// All pairs, for query parsing.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A boolean parameter (`true/false/1/0/yes/no/on/off`).
    ///
    /// # Errors
    /// 422 for a value that is not a boolean.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| {
                ApiError::Unprocessable(format!("{name} must be a boolean, got {v:?}"))
            }),
        }
    }

    /// A non-negative integer parameter.
    ///
    /// # Errors
    /// 422 for a value that is not a non-negative integer.
    pub fn usize(&self, name: &str) -> Result<Option<usize>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                ApiError::Unprocessable(format!("{name} must be a non-negative integer, got {v:?}"))
            }),
        }
    }
}
