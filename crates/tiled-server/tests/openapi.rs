//! The OpenAPI document and the docs page, against the real router: the
//! document describes every route (and only routes) the server answers,
//! the page loads from this server alone, and both are public.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Map, Value, json};
use tiled_adapters::{AdapterError, MetadataRevision, NewChild, TreeWriter};
use tiled_model::Spec;
use tiled_server::metrics::{Metrics, route_label};
use tiled_server::multi_user::{MultiUser, Provider};
use tiled_server::openapi::{In, ROUTES, Reply as Answer, Route, Security};
use tiled_server::{AuthConfig, ServerConfig, router_with_metrics};

mod common;
use common::{Reply, get, send};

const KEY: &str = "secret";

fn config(allow_anonymous: bool, multi_user: Option<Arc<MultiUser>>) -> ServerConfig {
    ServerConfig {
        auth: AuthConfig {
            api_key: KEY.into(),
            allow_anonymous,
            multi_user,
        },
        response_bytesize_limit: tiled_server::DEFAULT_RESPONSE_BYTESIZE_LIMIT,
        data_memory_budget: tiled_server::DEFAULT_DATA_MEMORY_BUDGET,
        tree_blocks: false,
        allow_origins: Vec::new(),
    }
}

/// A single-user server of the demo tree.
fn single_user(allow_anonymous: bool) -> Router {
    tiled_server::router(tiled_demo::demo_tree(), config(allow_anonymous, None))
}

/// A writer that accepts every write and records which were made, so write
/// routes reach their handlers on the in-memory demo tree.
#[derive(Default)]
struct RecordingWriter(Mutex<Vec<&'static str>>);

impl RecordingWriter {
    fn record(&self, what: &'static str) {
        self.0.lock().expect("lock").push(what);
    }
}

impl TreeWriter for RecordingWriter {
    fn create(&self, _: &[String], _: &NewChild) -> Result<Value, AdapterError> {
        self.record("create");
        Ok(json!([]))
    }
    fn update_metadata(
        &self,
        _: &[String],
        _: &Map<String, Value>,
        _: Option<&[Spec]>,
        _: Option<&[String]>,
        _: bool,
    ) -> Result<(), AdapterError> {
        self.record("update_metadata");
        Ok(())
    }
    fn revisions(
        &self,
        _: &[String],
        _: usize,
        _: usize,
    ) -> Result<(usize, Vec<MetadataRevision>), AdapterError> {
        self.record("revisions");
        Ok((0, Vec::new()))
    }
    fn delete_revision(&self, _: &[String], _: i64) -> Result<(), AdapterError> {
        self.record("delete_revision");
        Ok(())
    }
    fn delete(&self, _: &[String], _: bool, _: bool) -> Result<(), AdapterError> {
        self.record("delete");
        Ok(())
    }
    fn write_array(&self, _: &[String], _: Option<&[usize]>, _: &[u8]) -> Result<(), AdapterError> {
        self.record("write_array");
        Ok(())
    }
    fn patch_array(
        &self,
        _: &[String],
        _: &[usize],
        _: &[usize],
        _: bool,
        _: &[u8],
    ) -> Result<Value, AdapterError> {
        self.record("patch_array");
        Ok(json!({}))
    }
    fn write_table(
        &self,
        _: &[String],
        _: Option<usize>,
        _: bool,
        _: &[u8],
    ) -> Result<(), AdapterError> {
        self.record("write_table");
        Ok(())
    }
    fn register(&self, _: &[String], _: &NewChild, _: &Value) -> Result<Value, AdapterError> {
        self.record("register");
        Ok(json!([]))
    }
}

/// An OpenID Connect provider that cannot be reached (nothing leaves the
/// test): its routes answer, with 502 where the provider is needed.
struct Offline;

impl tiled_auth::oidc::OidcHttp for Offline {
    fn get(&self, _: &str) -> Result<tiled_auth::oidc::HttpReply, String> {
        Err("offline".into())
    }
    fn post_form(
        &self,
        _: &str,
        _: &[(&str, &str)],
        _: Option<(&str, &str)>,
    ) -> Result<tiled_auth::oidc::HttpReply, String> {
        Err("offline".into())
    }
}

/// Login providers of the full app: one of each kind.
const PROVIDERS: [&str; 2] = ["toy", "sso"];

/// Everything switched on: multi-user (anonymous reading allowed), a
/// password and an OIDC provider, a writer. Returns the app, an admin's
/// API key and the admin's UUID.
fn full_app() -> (Router, String, String) {
    full_app_with(true)
}

fn full_app_with(allow_anonymous: bool) -> (Router, String, String) {
    let store = tiled_auth::AuthStore::temporary().expect("auth store");
    let admin = store.create_service_principal("admin").expect("admin");
    let (_, admin_key) = store
        .create_api_key(admin.uuid, None, None, None, None)
        .expect("key");
    let users = std::collections::HashMap::from([("alice".to_string(), "pw".to_string())]);
    let oidc = tiled_auth::oidc::OidcProvider::new(
        tiled_auth::oidc::OidcConfig {
            audience: "tiled".into(),
            client_id: "tiled".into(),
            client_secret: "secret".into(),
            well_known_uri: "http://127.0.0.1:9/.well-known/openid-configuration".into(),
            confirmation_message: None,
            redirect_on_success: None,
            redirect_on_failure: None,
            user_id_claim: "sub".into(),
        },
        Arc::new(Offline),
    );
    let mu = MultiUser {
        policy: None,
        store: Arc::new(store),
        tokens: tiled_auth::TokenIssuer::new(vec![tiled_auth::TokenIssuer::random_key()])
            .expect("tokens"),
        providers: vec![
            Provider::password(
                PROVIDERS[0],
                Arc::new(tiled_auth::DictionaryAuthenticator::new(users)),
            ),
            Provider::oidc(PROVIDERS[1], Arc::new(oidc)),
        ],
        admins: Vec::new(),
        limiter: tiled_auth::LoginLimiter::default(),
        device: Default::default(),
    };
    let app = router_with_metrics(
        tiled_demo::demo_tree(),
        config(allow_anonymous, Some(Arc::new(mu))),
        Some(Arc::new(RecordingWriter::default())),
        Arc::new(Metrics::new()),
    );
    (app, admin_key, admin.uuid.to_string())
}

impl Reply {
    fn detail(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        v.get("detail")?.as_str().map(str::to_string)
    }
    /// Whether the router found no route for this method and path: axum's
    /// bare 404/405, the dispatcher's `Not Found`, or a method the route
    /// refuses. A 404 naming what is missing (a node, a provider) or a 405
    /// for a read-only tree came from a handler.
    fn unknown_route(&self) -> bool {
        let detail = self.detail();
        match self.status.as_u16() {
            404 => self.body.is_empty() || detail.as_deref() == Some("Not Found"),
            405 => detail.is_none_or(|d| d.starts_with("Method ")),
            _ => false,
        }
    }
}

/// The route's path with its path parameters filled in: their documented
/// examples, but for `uuid` (the admin's, which exists) and `provider`.
fn concrete(route: &Route, uuid: &str, provider: &str) -> String {
    let mut path = route.path.to_string();
    for p in route.params.iter().filter(|p| p.location == In::Path) {
        let value = match p.name {
            "uuid" => uuid,
            "provider" => provider,
            _ => p.example.expect("path parameters have examples"),
        };
        path = path.replace(&format!("{{{}}}", p.name), value);
    }
    path
}

/// `path` with the route's required query parameters (their examples).
fn with_required_query(route: &Route, path: &str) -> String {
    let query: Vec<String> = route
        .params
        .iter()
        .filter(|p| p.location == In::Query && p.required)
        .map(|p| {
            let example = p.example.expect("required parameters have examples");
            format!(
                "{}={}",
                p.name,
                percent_encoding::utf8_percent_encode(example, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

async fn request(
    app: &Router,
    method: Method,
    uri: &str,
    key: &str,
    content_type: Option<&str>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "test")
        .header(header::AUTHORIZATION, format!("Apikey {key}"));
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    send(app, req.body(Body::empty()).expect("request")).await
}

async fn document(app: &Router, uri: &str) -> Value {
    let r = get(app, uri).await;
    assert_eq!(r.status, 200, "{uri}: {}", r.lossy());
    assert_eq!(r.header("content-type"), Some("application/json"), "{uri}");
    r.json()
}

#[tokio::test]
async fn the_document_is_openapi_3_and_lists_every_route() {
    let app = single_user(true);
    let doc = document(&app, "/openapi.json").await;
    assert_eq!(document(&app, "/api/v1/openapi.json").await, doc);
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert_eq!(doc["info"]["title"], "tiled-rs");

    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for item in paths.values() {
        operations += [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ]
        .iter()
        .filter(|m| item.get(**m).is_some())
        .count();
    }
    // Every row is there, and nothing else.
    assert_eq!(operations, ROUTES.len());
    let mut ids = BTreeSet::new();
    for route in ROUTES {
        let op = &doc["paths"][route.path][route.method.key()];
        assert!(
            op.is_object(),
            "{} {} is missing",
            route.method.key(),
            route.path
        );
        assert_eq!(op["summary"], route.summary);
        assert!(ids.insert(op["operationId"].as_str().expect("operationId").to_string()));
        let names: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        for p in route.params {
            assert!(names.contains(p.name), "{}: {}", route.path, p.name);
        }
        let security = &op["security"];
        match route.security {
            Security::Public => assert_eq!(security, &json!([]), "{}", route.path),
            Security::Optional => assert!(
                security.as_array().expect("security").contains(&json!({})),
                "{}",
                route.path
            ),
            Security::Required => {
                let s = security.as_array().expect("security");
                assert!(!s.is_empty() && !s.contains(&json!({})), "{}", route.path);
            }
        }
    }

    // The parameters the Python client sends.
    let search = &doc["paths"]["/api/v1/search/{path}"]["get"]["parameters"];
    let names: BTreeSet<&str> = search
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in [
        "path",
        "page[offset]",
        "page[limit]",
        "fields",
        "sort",
        "filter[fulltext][condition][text]",
        "filter[eq][condition][key]",
        "filter[eq][condition][value]",
        "filter[structure_family][condition][value]",
    ] {
        assert!(names.contains(name), "search lacks {name}");
    }
    let param = |path: &str, method: &str, name: &str| -> Value {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_else(|| panic!("{method} {path} lacks {name}"))
    };
    assert_eq!(
        param("/api/v1/array/block/{path}", "get", "block")["required"],
        true
    );
    assert_eq!(
        param("/api/v1/array/block/{path}", "get", "slice")["in"],
        "query"
    );
    param("/api/v1/array/full/{path}", "get", "expected_shape");
    param("/api/v1/array/full/{path}", "get", "format");
    assert_eq!(
        param("/api/v1/table/partition/{path}", "get", "partition")["required"],
        true
    );
    param("/api/v1/table/full/{path}", "get", "column");
    param("/api/v1/array/full/{path}", "put", "persist");
    param("/api/v1/array/full/{path}", "patch", "extend");
    param("/api/v1/metadata/{path}", "patch", "drop_revision");
    assert_eq!(
        param("/api/v1/metadata/{path}", "get", "path")["in"],
        "path"
    );

    // Request bodies.
    let body = |path: &str, method: &str| -> BTreeSet<String> {
        doc["paths"][path][method]["requestBody"]["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has no body"))
            .keys()
            .cloned()
            .collect()
    };
    assert!(body("/api/v1/array/full/{path}", "put").contains("application/octet-stream"));
    assert!(
        body("/api/v1/table/partition/{path}", "patch")
            .contains("application/vnd.apache.arrow.file")
    );
    assert!(body("/api/v1/metadata/{path}", "post").contains("application/json"));
    assert!(
        body("/api/v1/auth/provider/{provider}/token", "post")
            .contains("application/x-www-form-urlencoded")
    );

    // Data responses list the media types the about document lists.
    let about = get(&app, "/api/v1/").await.json();
    for (path, family) in [
        ("/api/v1/array/full/{path}", "array"),
        ("/api/v1/table/partition/{path}", "table"),
        ("/api/v1/container/full/{path}", "container"),
    ] {
        let listed: BTreeSet<&str> = doc["paths"][path]["get"]["responses"]["200"]["content"]
            .as_object()
            .expect("content")
            .keys()
            .map(String::as_str)
            .collect();
        let offered: BTreeSet<&str> = about["formats"][family]
            .as_array()
            .expect("formats")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(listed, offered, "{path}");
    }

    // The credentials the server accepts.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["apiKeyHeader"],
        json!({"type": "apiKey", "in": "header", "name": "Authorization",
               "description": schemes["apiKeyHeader"]["description"]})
    );
    assert_eq!(schemes["apiKeyQuery"]["in"], "query");
    assert_eq!(schemes["apiKeyQuery"]["name"], "api_key");
    assert_eq!(schemes["apiKeyCookie"]["in"], "cookie");
    assert_eq!(schemes["apiKeyCookie"]["name"], "tiled_api_key");
    assert_eq!(schemes["bearerToken"]["type"], "http");
    assert_eq!(schemes["bearerToken"]["scheme"], "bearer");
    assert_eq!(schemes["bearerToken"]["bearerFormat"], "JWT");
    assert!(doc["components"]["schemas"]["Error"]["properties"]["detail"].is_object());
}

#[tokio::test]
async fn every_documented_route_reaches_its_handler() {
    let (app, key, uuid) = full_app();
    let mut failures = Vec::new();
    for route in ROUTES {
        let content_type = route.body.map(|b| b.content[0].0);
        // A route needs the right kind of provider (the OIDC-only ones
        // answer a password provider `Not Found`): one must do.
        let mut answers = Vec::new();
        for provider in PROVIDERS {
            let uri = with_required_query(route, &concrete(route, &uuid, provider));
            let r = request(&app, route.method.method(), &uri, &key, content_type).await;
            let reached = !r.unknown_route() && r.status.as_u16() < 500
                || r.status == StatusCode::BAD_GATEWAY && route.path.contains("/provider/");
            answers.push((
                uri,
                r.status,
                r.lossy().chars().take(200).collect::<String>(),
                reached,
            ));
            if !route.path.contains("{provider}") {
                break;
            }
        }
        if !answers.iter().any(|a| a.3) {
            failures.push(format!(
                "{} {}: {answers:?}",
                route.method.key(),
                route.path
            ));
        }
        // The documented examples of reads work as they are.
        let read = route.method == tiled_server::openapi::M::Get
            && !route.path.starts_with("/api/v1/auth/")
            && !matches!(route.reply, Answer::Redirect(..));
        if read && !answers[0].1.is_success() {
            failures.push(format!("GET {}: {:?}", route.path, answers[0]));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The routes the dispatcher (`lib.rs` `route`), `write.rs`,
/// `multi_user.rs` and `oidc.rs` match, by reading their code, with the
/// axum routes of `lib.rs` and `openapi.rs`. Each is probed with every
/// method below; whatever is answered must be documented.
const KNOWN_ROUTES: &[&str] = &[
    "/healthz",
    "/api/v1/",
    "/api/v1/metrics",
    "/openapi.json",
    "/api/v1/openapi.json",
    "/docs",
    "/docs/",
    "/docs/{file}",
    "/api/v1/docs",
    "/api/v1/docs/",
    "/api/v1/docs/{file}",
    "/api/v1/metadata/{path}",
    "/api/v1/search/{path}",
    "/api/v1/distinct/{path}",
    "/api/v1/revisions/{path}",
    "/api/v1/register/{path}",
    "/api/v1/array/full/{path}",
    "/api/v1/array/block/{path}",
    "/api/v1/table/full/{path}",
    "/api/v1/table/partition/{path}",
    "/api/v1/node/full/{path}",
    "/api/v1/container/full/{path}",
    "/api/v1/auth/provider/{provider}/token",
    "/api/v1/auth/provider/{provider}/authorize",
    "/api/v1/auth/provider/{provider}/code",
    "/api/v1/auth/provider/{provider}/device_code",
    "/api/v1/auth/principal",
    "/api/v1/auth/principal/{uuid}",
    "/api/v1/auth/principal/{uuid}/apikey",
    "/api/v1/auth/session/refresh",
    "/api/v1/auth/session/revoke",
    "/api/v1/auth/session/revoke/{session_id}",
    "/api/v1/auth/whoami",
    "/api/v1/auth/logout",
    "/api/v1/auth/apikey",
];

/// Near misses that no method may reach: proof that the probe below tells
/// an unknown route from a known one.
const NOT_ROUTES: &[&str] = &[
    "/api/v1/nope/x",
    "/api/v1/array/nope/nested/images/tiny_image",
    "/api/v1/node/nope/tables/short_table",
    "/api/v1/auth/nope",
    "/api/v1/auth/provider/toy/nope",
    "/api/v1/auth/principal/{uuid}/nope",
    "/api/v1/auth/session/nope",
    "/docs/nope.js",
    "/api/v1/docs/nope.js",
    "/openapi.yaml",
];

const PROBED_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

#[tokio::test]
async fn every_route_answered_is_documented() {
    let (app, key, uuid) = full_app();
    // Template -> documented methods.
    let mut documented: BTreeMap<&str, BTreeSet<Method>> = BTreeMap::new();
    for route in ROUTES {
        documented
            .entry(route.path)
            .or_default()
            .insert(route.method.method());
    }
    // A concrete path for each template (from a row that has it).
    let example = |template: &str, provider: &str| -> String {
        match ROUTES.iter().find(|r| r.path == template) {
            Some(route) => concrete(route, &uuid, provider),
            None => panic!("{template} is answered by the server but not documented"),
        }
    };
    let mut undocumented = Vec::new();
    let mut templates: BTreeSet<&str> = KNOWN_ROUTES.iter().copied().collect();
    templates.extend(documented.keys().copied());
    for template in templates {
        for method in PROBED_METHODS {
            let mut answered = false;
            for provider in PROVIDERS {
                let uri = example(template, provider);
                let r = request(&app, method.clone(), &uri, &key, None).await;
                answered |= !r.unknown_route();
            }
            let listed = documented.get(template).is_some_and(|ms| {
                ms.contains(&method) || (method == Method::HEAD && ms.contains(&Method::GET))
            });
            if answered && !listed {
                undocumented.push(format!("{method} {template}"));
            }
            if listed && method != Method::HEAD && !answered {
                undocumented.push(format!(
                    "{method} {template} is documented but not answered"
                ));
            }
            // The document says HEAD works as GET does, outside auth.
            let get_listed = documented
                .get(template)
                .is_some_and(|ms| ms.contains(&Method::GET));
            if method == Method::HEAD
                && get_listed
                && !template.starts_with("/api/v1/auth/")
                && !answered
            {
                undocumented.push(format!("HEAD {template} is not answered as GET is"));
            }
        }
    }
    assert!(undocumented.is_empty(), "{undocumented:#?}");
    for path in NOT_ROUTES {
        let path = path.replace("{uuid}", &uuid);
        for method in PROBED_METHODS {
            let r = request(&app, method.clone(), &path, &key, None).await;
            assert!(
                r.unknown_route(),
                "{method} {path}: {} {}",
                r.status,
                r.lossy()
            );
        }
    }
}

#[tokio::test]
async fn deprecated_aliases_answer_as_the_documented_routes() {
    let app = single_user(true);
    for (alias, documented) in [
        (
            "/api/v1/dataframe/partition/tables/short_table?partition=0",
            "/api/v1/table/partition/tables/short_table?partition=0",
        ),
        (
            "/api/v1/dataframe/full/tables/short_table",
            "/api/v1/table/full/tables/short_table",
        ),
        ("/metadata/nested", "/api/v1/metadata/nested"),
        ("/array/full/scalars/pi", "/api/v1/array/full/scalars/pi"),
    ] {
        let a = get(&app, alias).await;
        let d = get(&app, documented).await;
        assert_eq!(a.status, 200, "{alias}");
        assert_eq!((a.status, a.body), (d.status, d.body), "{alias}");
    }
}

/// The `src` and `href` attribute values of an HTML page.
fn linked_urls(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for piece in html.split(attr).skip(1) {
            if let Some((url, _)) = piece.split_once('"') {
                out.push(url.to_string());
            }
        }
    }
    out
}

fn media_type_for(url: &str) -> &'static str {
    match url.rsplit('.').next() {
        Some("js") => "javascript",
        Some("css") => "text/css",
        Some("png") => "image/png",
        other => panic!("unexpected asset {url} ({other:?})"),
    }
}

async fn check_page(app: &Router, page: &str, document_url: &str) {
    let bare = page.trim_end_matches('/');
    let redirect = get(app, bare).await;
    assert!(
        redirect.status.is_redirection(),
        "{bare}: {}",
        redirect.status
    );
    assert_eq!(redirect.header("location"), Some(page));

    let r = get(app, page).await;
    assert_eq!(r.status, 200, "{page}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{page}: {:?}",
        r.header("content-type")
    );
    let html = r.text();
    let urls = linked_urls(&html);
    assert!(urls.len() >= 4, "{page} links {urls:?}");
    assert!(urls.iter().any(|u| u.ends_with(".js")));
    assert!(urls.iter().any(|u| u.ends_with(".css")));
    for url in &urls {
        // Relative to the page: nothing from another host or scheme.
        assert!(
            !url.contains("://") && !url.starts_with("//") && !url.starts_with('/'),
            "{page} links {url}"
        );
        let local = format!("{page}{}", url.trim_start_matches("./"));
        let asset = get(app, &local).await;
        assert_eq!(asset.status, 200, "{local}");
        let ct = asset.header("content-type").unwrap_or("");
        assert!(ct.contains(media_type_for(url)), "{local}: {ct}");
        assert!(!asset.body.is_empty(), "{local}");
        if url.ends_with(".css") {
            let css = asset.text();
            assert!(!css.contains("@import"), "{local} imports");
            assert!(
                !css.contains("url(http")
                    && !css.contains("url(\"http")
                    && !css.contains("url('http"),
                "{local}"
            );
        }
    }
    // The script that starts the page reads the document by a relative URL
    // and has the online validator off.
    let init = get(app, &format!("{page}swagger-initializer.js")).await;
    assert_eq!(init.status, 200);
    let init = init.text();
    assert!(init.contains("\"url\": \"../openapi.json\""), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
    assert!(
        !init.contains("http://") && !init.contains("https://"),
        "{init}"
    );
    // `../openapi.json` from the page is the document.
    let doc = document(app, document_url).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
}

#[tokio::test]
async fn the_docs_page_loads_everything_from_this_server() {
    let app = single_user(true);
    check_page(&app, "/docs/", "/openapi.json").await;
    check_page(&app, "/api/v1/docs/", "/api/v1/openapi.json").await;
}

#[tokio::test]
async fn the_about_documentation_link_leads_to_the_page() {
    let app = single_user(true);
    let about = get(&app, "/api/v1/").await.json();
    let link = about["links"]["documentation"].as_str().expect("link");
    let path = link.strip_prefix("http://test").expect("same host");
    let r = get(&app, path).await;
    let location = r.header("location").expect("a redirect").to_string();
    let page = get(&app, &location).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("swagger-initializer.js"));
}

#[tokio::test]
async fn the_docs_are_public_on_a_private_server() {
    for app in [single_user(false), full_app_with(false).0] {
        // The control: the API itself wants credentials.
        assert_eq!(get(&app, "/api/v1/metadata/").await.status, 401);
        for uri in [
            "/openapi.json",
            "/api/v1/openapi.json",
            "/docs",
            "/docs/",
            "/api/v1/docs/",
            "/docs/swagger-ui.css",
            "/docs/swagger-initializer.js",
        ] {
            let r = get(&app, uri).await;
            assert!(
                r.status == 200 || uri == "/docs" && r.status.is_redirection(),
                "{uri}: {} {}",
                r.status,
                r.lossy()
            );
        }
    }
}

#[tokio::test]
async fn routes_have_their_documented_metric_labels() {
    for route in ROUTES {
        let path = concrete(route, "00000000-0000-4000-8000-000000000000", "toy");
        assert_eq!(route_label(&path), route.label, "{path}");
    }
    let metrics = Arc::new(Metrics::new());
    let app = router_with_metrics(
        tiled_demo::demo_tree(),
        config(true, None),
        None,
        metrics.clone(),
    );
    assert_eq!(get(&app, "/docs/").await.status, 200);
    assert_eq!(get(&app, "/api/v1/openapi.json").await.status, 200);
    let text = metrics.encode().expect("metrics");
    for label in ["docs", "openapi"] {
        let line =
            format!("tiled_requests_total{{method=\"GET\",route=\"{label}\",status=\"200\"}} 1");
        assert!(text.contains(&line), "{line} not in\n{text}");
    }
}
