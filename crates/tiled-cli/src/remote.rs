//! `tiled register http://server PATH`: the walk's nodes go to a running
//! server's write API instead of a database. Nodes with files are posted
//! to `/api/v1/register/{parent}` (the server checks that they lie in its
//! readable storage and opens them once); containers to
//! `/api/v1/metadata/{parent}`.

use serde_json::{Value, json};
use tiled_catalog::{CatalogError, NewNode};
use tiled_files::walk::NodeSink;

/// A server's HTTP API as a [`NodeSink`].
pub struct HttpSink {
    /// `http(s)://host:port/api/v1`.
    api: String,
    api_key: Option<String>,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl HttpSink {
    /// A sink posting to the server at `uri` (with or without `/api/v1`),
    /// authenticated by `api_key`. Call from a blocking thread of the
    /// `runtime`.
    pub fn new(uri: &str, api_key: Option<String>, runtime: tokio::runtime::Handle) -> Self {
        let base = uri.trim_end_matches('/');
        let api = if base.ends_with("/api/v1") {
            base.to_string()
        } else {
            format!("{base}/api/v1")
        };
        HttpSink {
            api,
            api_key,
            client: reqwest::Client::new(),
            runtime,
        }
    }

    fn url(&self, route: &str, path: &[String]) -> String {
        let encoded: Vec<String> = path
            .iter()
            .map(|k| {
                percent_encoding::utf8_percent_encode(k, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            })
            .collect();
        format!("{}/{route}/{}", self.api, encoded.join("/"))
    }

    fn send(&self, request: reqwest::RequestBuilder) -> Result<(), CatalogError> {
        let request = match &self.api_key {
            Some(key) => request.header("Authorization", format!("Apikey {key}")),
            None => request,
        };
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .map_err(|e| CatalogError::Internal(format!("{}: {e}", self.api)))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let text = response.text().await.unwrap_or_default();
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("detail")
                        .map(|d| d.as_str().map_or(d.to_string(), str::to_string))
                })
                .unwrap_or(text);
            Err(match status.as_u16() {
                409 => CatalogError::Conflict(detail),
                404 => CatalogError::NotFound(detail),
                400 | 422 => CatalogError::BadRequest(detail),
                401 | 403 => CatalogError::BadRequest(format!(
                    "the server refused the API key ({status}): {detail}; give one with \
                     write access (--api-key or TILED_API_KEY)"
                )),
                _ => CatalogError::Internal(format!("{status}: {detail}")),
            })
        })
    }
}

/// The create body of the write API (spec §8.1) for `node`.
fn body(node: &NewNode) -> Value {
    let family = node.structure_family.as_str();
    let sources: Vec<Value> = node
        .data_sources
        .iter()
        .map(|d| {
            json!({
                "structure_family": family,
                "structure": node.structure,
                "id": null,
                "mimetype": d.mimetype,
                "parameters": d.parameters,
                "properties": d.properties,
                "management": d.management,
                "assets": d.assets.iter().map(|a| json!({
                    "data_uri": a.data_uri,
                    "is_directory": a.is_directory,
                    "parameter": a.parameter,
                    "num": a.num,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "id": node.key,
        "structure_family": family,
        "metadata": node.metadata,
        "specs": node.specs,
        "data_sources": sources,
        "access_tags": null,
    })
}

impl NodeSink for HttpSink {
    fn create_node(&self, parent: &[String], node: &NewNode) -> Result<(), CatalogError> {
        let route = if node.data_sources.iter().any(|d| !d.assets.is_empty()) {
            "register"
        } else {
            "metadata"
        };
        let request = self
            .client
            .post(self.url(route, parent))
            .header("Content-Type", "application/json")
            .body(body(node).to_string());
        self.send(request)
    }

    fn delete_node(&self, path: &[String]) -> Result<(), CatalogError> {
        let request = self
            .client
            .delete(format!("{}?recursive=true", self.url("metadata", path)));
        self.send(request)
    }
}
