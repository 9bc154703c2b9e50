//! `tiled serve config FILE`: the service configuration in upstream
//! Tiled's YAML schema (`trees`, `authentication`, `uvicorn`,
//! `response_bytesize_limit`, `allow_origins`, ...), so an operator's
//! existing file works for the parts this server implements. `${VAR}`
//! is replaced by the environment variable's value (an unset one is an
//! error naming it). Every mistake is reported with the key it is at,
//! e.g. `trees[0].args.uri: expected a string`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A config mistake, at a dotted key path.
#[derive(Debug)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// What to serve at one path.
#[derive(Debug, Clone, PartialEq)]
pub enum TreeKind {
    /// A SQL catalog (`tree: catalog` or upstream's
    /// `tiled.catalog:from_uri`); `uri: None` is a temporary one
    /// (`tiled.catalog:in_memory`).
    Catalog {
        uri: Option<String>,
        init: bool,
        writable_storage: Option<String>,
        readable_storage: Vec<PathBuf>,
        /// The tags of the catalog's root (`top_level_access_tags`, or
        /// upstream 0.2.16's `top_level_access_blob: {tags: [...]}`).
        top_level_access_tags: Vec<String>,
    },
    /// The generated demo tree.
    Demo,
    /// A directory of files, registered in the background.
    Directory { path: PathBuf, watch: bool },
}

/// One `trees` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeConfig {
    /// Keys from the root (`/` is empty).
    pub path: Vec<String>,
    pub kind: TreeKind,
}

/// One login provider.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderKind {
    /// `tiled.authenticators:DictionaryAuthenticator`: its `args`.
    Dictionary(Value),
    /// A file of `user:$argon2id$...` lines.
    UsersFile(PathBuf),
    /// `tiled.authenticators:PAMAuthenticator`: the system's accounts
    /// through this PAM service (`args.service`, default `login`).
    Pam { service: String },
    /// `tiled.authenticators:OIDCAuthenticator`: an OpenID Connect provider.
    Oidc(tiled_auth::oidc::OidcConfig),
}

/// `authentication.providers[*]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
}

/// Multi-user authentication (`authentication.providers` given).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MultiUserConfig {
    pub providers: Vec<ProviderConfig>,
    pub secret_keys: Vec<String>,
    pub access_token_max_age: Option<f64>,
    pub refresh_token_max_age: Option<f64>,
    pub session_max_age: Option<f64>,
    /// `(provider, id)`.
    pub admins: Vec<(String, String)>,
    /// The authentication database (`database.uri`); temporary if absent.
    pub database_uri: Option<String>,
    pub database_init: bool,
    /// Tag-based access control (`access_control`).
    pub access: Option<AccessConfig>,
}

/// `access_control` with the tag-based policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessConfig {
    /// The provider whose identities name users in the tag definitions.
    pub provider: String,
    /// Where the tag definitions come from.
    pub definitions: TagDefinitions,
    /// The scopes the policy may grant (`args.scopes`; by default all).
    pub scopes: std::collections::BTreeSet<String>,
}

/// Where an access policy's tag definitions come from.
#[derive(Debug, Clone, PartialEq)]
pub enum TagDefinitions {
    /// `args.tags` (tag → users, with every scope) and `args.public_tags`,
    /// or `args.tag_config` given as a mapping: compiled once.
    Inline(tiled_server::access::TagTable),
    /// `args.tag_config: FILE`: upstream's tag file, read again when it
    /// changes.
    File(PathBuf),
    /// `args.access_tags_parser: tiled.access_control.access_tags:AccessTagsParser`
    /// (upstream 0.2.20): the tag tables of the first catalog tree, filled by
    /// `tiled admin compile-tags`.
    Catalog,
}

impl Default for TagDefinitions {
    fn default() -> Self {
        TagDefinitions::Inline(Default::default())
    }
}

/// The parts of the service configuration this server acts on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceConfig {
    /// Multi-user authentication, when providers are configured.
    pub multi_user: Option<MultiUserConfig>,
    pub trees: Vec<TreeConfig>,
    pub single_user_api_key: Option<String>,
    pub allow_anonymous_access: Option<bool>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub response_bytesize_limit: Option<usize>,
    pub allow_origins: Vec<String>,
}

/// Top-level keys of upstream's schema that are accepted and have no
/// effect here (logged).
const IGNORED_TOP_LEVEL: [&str; 9] = [
    "object_cache",
    "metrics",
    "specs",
    "reject_undeclared_specs",
    "expose_raw_assets",
    "media_types",
    "file_extensions",
    "validation",
    "streaming_cache",
];

const TOP_LEVEL: [&str; 8] = [
    "trees",
    "authentication",
    "access_control",
    "database",
    "uvicorn",
    "response_bytesize_limit",
    "allow_origins",
    "root_path",
];

/// Read and check a config file (or a directory of `*.yml`/`*.yaml`
/// files, merged by top-level key, as upstream allows).
///
/// # Errors
/// A [`ConfigError`] naming the file or key at fault.
pub fn load(path: &Path) -> Result<ServiceConfig, ConfigError> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| err("", format!("{}: {e}", path.display())))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut merged = Map::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| err("", format!("{}: {e}", file.display())))?;
        let value = parse_text(&text).map_err(|e| ConfigError {
            key: e.key,
            message: format!("{}: {}", file.display(), e.message),
        })?;
        let Value::Object(map) = value else {
            return Err(err(
                "",
                format!("{}: the top level must be a mapping", file.display()),
            ));
        };
        for (k, v) in map {
            if merged.contains_key(&k) {
                return Err(err(
                    &k,
                    format!("given twice (again in {})", file.display()),
                ));
            }
            merged.insert(k, v);
        }
    }
    from_value(
        &Value::Object(merged),
        path.parent().unwrap_or(Path::new(".")),
    )
}

/// Expand `${VAR}` and parse YAML into JSON values.
///
/// # Errors
/// Unset variables and YAML syntax errors.
pub fn parse_text(text: &str) -> Result<Value, ConfigError> {
    let expanded = expand_env(text, |name| std::env::var(name).ok())?;
    serde_saphyr::from_str::<Value>(&expanded).map_err(|e| err("", format!("invalid YAML: {e}")))
}

/// Replace every `${NAME}` with `lookup(NAME)`.
///
/// # Errors
/// An unset variable, or an unterminated `${`.
pub fn expand_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| err("", "an unterminated ${ in the file"))?;
        let name = &after[..end];
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(err("", format!("${{{name}}} is not a variable name")));
        }
        let value = lookup(name).ok_or_else(|| {
            err(
                "",
                format!("the environment variable {name} (used as ${{{name}}}) is not set"),
            )
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn as_str<'a>(v: &'a Value, key: &str) -> Result<&'a str, ConfigError> {
    v.as_str()
        .ok_or_else(|| err(key, format!("expected a string, got {v}")))
}

fn as_bool(v: &Value, key: &str) -> Result<bool, ConfigError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if matches!(s.as_str(), "true" | "True" | "yes" | "1") => Ok(true),
        Value::String(s) if matches!(s.as_str(), "false" | "False" | "no" | "0") => Ok(false),
        other => Err(err(key, format!("expected true or false, got {other}"))),
    }
}

fn as_map<'a>(v: &'a Value, key: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object()
        .ok_or_else(|| err(key, format!("expected a mapping, got {v}")))
}

fn check_keys(map: &Map<String, Value>, key: &str, known: &[&str]) -> Result<(), ConfigError> {
    for k in map.keys() {
        if !known.contains(&k.as_str()) {
            let at = if key.is_empty() {
                k.clone()
            } else {
                format!("{key}.{k}")
            };
            return Err(err(
                &at,
                format!("unknown key; expected one of: {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Paths in the file are relative to the file's directory.
fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = p
        .strip_prefix("file://localhost")
        .or_else(|| p.strip_prefix("file://"))
        .unwrap_or(p);
    let path = PathBuf::from(p);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// Check a parsed config.
///
/// # Errors
/// A [`ConfigError`] naming the key at fault.
pub fn from_value(value: &Value, base: &Path) -> Result<ServiceConfig, ConfigError> {
    let top = as_map(value, "")?;
    let mut known: Vec<&str> = TOP_LEVEL.to_vec();
    known.extend(IGNORED_TOP_LEVEL);
    check_keys(top, "", &known)?;
    for k in IGNORED_TOP_LEVEL {
        if top.contains_key(k) {
            tracing::warn!("config: `{k}` has no effect in tiled-rs");
        }
    }
    let mut config = ServiceConfig::default();
    let trees = top
        .get("trees")
        .ok_or_else(|| err("trees", "required: the trees to serve"))?
        .as_array()
        .ok_or_else(|| err("trees", "expected a list"))?;
    if trees.is_empty() {
        return Err(err("trees", "give at least one tree"));
    }
    for (i, t) in trees.iter().enumerate() {
        config.trees.push(tree(t, &format!("trees[{i}]"), base)?);
    }
    for (i, a) in config.trees.iter().enumerate() {
        for b in &config.trees[i + 1..] {
            if a.path.starts_with(&b.path) || b.path.starts_with(&a.path) {
                return Err(err(
                    "trees",
                    format!(
                        "the paths /{} and /{} overlap: a tree cannot be mounted inside another",
                        a.path.join("/"),
                        b.path.join("/")
                    ),
                ));
            }
        }
    }
    if let Some(auth) = top.get("authentication") {
        authentication(auth, &mut config)?;
    }
    if let Some(ac) = top.get("access_control").filter(|v| !v.is_null()) {
        let access = access_control(ac, base)?;
        match &mut config.multi_user {
            Some(mu) => mu.access = Some(access),
            None => {
                return Err(err(
                    "access_control",
                    "an access policy needs users: configure authentication.providers",
                ));
            }
        }
    }
    if let Some(db) = top.get("database") {
        let db = as_map(db, "database")?;
        check_keys(
            db,
            "database",
            &[
                "uri",
                "init_if_not_exists",
                "pool_size",
                "pool_pre_ping",
                "max_overflow",
            ],
        )?;
        match &mut config.multi_user {
            Some(mu) => {
                if let Some(uri) = db.get("uri").filter(|v| !v.is_null()) {
                    mu.database_uri = Some(as_str(uri, "database.uri")?.to_string());
                }
                if let Some(init) = db.get("init_if_not_exists") {
                    mu.database_init = as_bool(init, "database.init_if_not_exists")?;
                }
            }
            None => tracing::warn!(
                "config: `database` (the authentication database) is not used without providers"
            ),
        }
    }
    if let Some(u) = top.get("uvicorn") {
        let u = as_map(u, "uvicorn")?;
        for (k, v) in u {
            let key = format!("uvicorn.{k}");
            match k.as_str() {
                "host" => config.host = Some(as_str(v, &key)?.to_string()),
                "port" => {
                    let port = v
                        .as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        .and_then(|p| u16::try_from(p).ok())
                        .ok_or_else(|| err(&key, format!("expected a port number, got {v}")))?;
                    config.port = Some(port);
                }
                "workers"
                | "root_path"
                | "proxy_headers"
                | "forwarded_allow_ips"
                | "ssl_keyfile"
                | "ssl_certfile"
                | "log_config"
                | "timeout_keep_alive" => {
                    tracing::warn!("config: `{key}` has no effect in tiled-rs");
                }
                _ => return Err(err(&key, "unknown key; expected host or port")),
            }
        }
    }
    if let Some(v) = top.get("response_bytesize_limit") {
        let n = v
            .as_u64()
            .or_else(|| v.as_str().and_then(parse_size))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                err(
                    "response_bytesize_limit",
                    format!("expected a number of bytes (or e.g. \"300 MB\"), got {v}"),
                )
            })?;
        config.response_bytesize_limit = Some(n);
    }
    if let Some(v) = top.get("allow_origins") {
        let list = v
            .as_array()
            .ok_or_else(|| err("allow_origins", "expected a list of origins"))?;
        for (i, o) in list.iter().enumerate() {
            config
                .allow_origins
                .push(as_str(o, &format!("allow_origins[{i}]"))?.to_string());
        }
    }
    if top.get("root_path").is_some_and(|v| !v.is_null()) {
        tracing::warn!(
            "config: `root_path` has no effect in tiled-rs (serve behind a proxy that strips it)"
        );
    }
    Ok(config)
}

fn access_control(ac: &Value, base: &Path) -> Result<AccessConfig, ConfigError> {
    let ac = as_map(ac, "access_control")?;
    check_keys(ac, "access_control", &["access_policy", "args"])?;
    let policy = as_str(
        ac.get("access_policy")
            .ok_or_else(|| err("access_control.access_policy", "required"))?,
        "access_control.access_policy",
    )?;
    if !matches!(
        policy,
        "tiled.access_control.access_policies:TagBasedAccessPolicy" | "tags"
    ) {
        return Err(err(
            "access_control.access_policy",
            format!(
                "{policy:?} cannot run in tiled-rs; use \
                 tiled.access_control.access_policies:TagBasedAccessPolicy (or `tags`)"
            ),
        ));
    }
    let empty = Map::new();
    let args = match ac.get("args") {
        None | Some(Value::Null) => &empty,
        Some(a) => as_map(a, "access_control.args")?,
    };
    check_keys(
        args,
        "access_control.args",
        &[
            "provider",
            "tags",
            "public_tags",
            "tag_config",
            "scopes",
            "access_tags_parser",
            "tags_db",
        ],
    )?;
    let provider = as_str(
        args.get("provider")
            .ok_or_else(|| err("access_control.args.provider", "required"))?,
        "access_control.args.provider",
    )?
    .to_string();
    let scopes = match args.get("scopes").filter(|v| !v.is_null()) {
        None => tiled_server::access::all_scopes(),
        Some(v) => {
            let list = v
                .as_array()
                .ok_or_else(|| err("access_control.args.scopes", "expected a list of scopes"))?;
            let mut out = std::collections::BTreeSet::new();
            for (i, s) in list.iter().enumerate() {
                let key = format!("access_control.args.scopes[{i}]");
                let s = as_str(s, &key)?;
                if !tiled_server::access::ALL_SCOPES.contains(&s) {
                    return Err(err(&key, format!("{s:?} is not a scope")));
                }
                out.insert(s.to_string());
            }
            out
        }
    };
    let sources: Vec<&str> = ["tags", "tag_config", "access_tags_parser"]
        .into_iter()
        .filter(|k| args.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if sources.len() > 1 {
        return Err(err(
            &format!("access_control.args.{}", sources[1]),
            format!(
                "give the tag definitions one way: {} and {} both given",
                sources[0], sources[1]
            ),
        ));
    }
    if args.contains_key("tags_db") {
        return Err(err(
            "access_control.args.tags_db",
            "a separate tag database is upstream's pre-0.2.20 form; with \
             access_tags_parser the tags live in the catalog (fill them with \
             `tiled admin compile-tags`), or give args.tag_config: FILE",
        ));
    }
    let definitions = match sources.first().copied() {
        Some("access_tags_parser") => {
            let parser = as_str(
                &args["access_tags_parser"],
                "access_control.args.access_tags_parser",
            )?;
            if parser != "tiled.access_control.access_tags:AccessTagsParser" {
                return Err(err(
                    "access_control.args.access_tags_parser",
                    format!(
                        "{parser:?} cannot run in tiled-rs; use \
                         tiled.access_control.access_tags:AccessTagsParser (tags in the \
                         catalog) or args.tag_config"
                    ),
                ));
            }
            TagDefinitions::Catalog
        }
        Some("tag_config") => match &args["tag_config"] {
            Value::String(path) => TagDefinitions::File(resolve(base, path)),
            Value::Object(_) => TagDefinitions::Inline(
                tiled_server::access::compile_tag_definitions(&args["tag_config"], &scopes)
                    .map_err(|e| err("access_control.args.tag_config", e))?,
            ),
            _ => {
                return Err(err(
                    "access_control.args.tag_config",
                    "expected a file path or a mapping with `tags`",
                ));
            }
        },
        _ => {
            let mut table = tiled_server::access::TagTable::default();
            if let Some(tags) = args.get("tags").filter(|v| !v.is_null()) {
                for (tag, users) in as_map(tags, "access_control.args.tags")? {
                    let key = format!("access_control.args.tags.{tag}");
                    if tag.starts_with("user:") || tag.starts_with("service:") {
                        return Err(err(
                            &key,
                            "user: and service: tags are given to users automatically",
                        ));
                    }
                    let list = users
                        .as_array()
                        .ok_or_else(|| err(&key, "expected a list of users"))?;
                    let grants = table.grants.entry(tag.clone()).or_default();
                    let owners = table.owners.entry(tag.clone()).or_default();
                    for (i, u) in list.iter().enumerate() {
                        let name = as_str(u, &format!("{key}[{i}]"))?.to_string();
                        grants.insert(name.clone(), scopes.clone());
                        owners.insert(name);
                    }
                }
            }
            if let Some(public) = args.get("public_tags").filter(|v| !v.is_null()) {
                let list = public
                    .as_array()
                    .ok_or_else(|| err("access_control.args.public_tags", "expected a list"))?;
                for (i, t) in list.iter().enumerate() {
                    let t = as_str(t, &format!("access_control.args.public_tags[{i}]"))?;
                    table.public.insert(t.to_string());
                    table.grants.entry(t.to_string()).or_default();
                }
            }
            TagDefinitions::Inline(table)
        }
    };
    Ok(AccessConfig {
        provider,
        definitions,
        scopes,
    })
}

/// A list of strings.
fn string_list(v: &Value, key: &str) -> Result<Vec<String>, ConfigError> {
    let list = v
        .as_array()
        .ok_or_else(|| err(key, "expected a list of strings"))?;
    list.iter()
        .enumerate()
        .map(|(i, t)| as_str(t, &format!("{key}[{i}]")).map(str::to_string))
        .collect()
}

/// "300 MB", "1.5GB", "1000" → bytes.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = num * factor;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

fn tree(t: &Value, key: &str, base: &Path) -> Result<TreeConfig, ConfigError> {
    let t = as_map(t, key)?;
    check_keys(t, key, &["path", "tree", "args"])?;
    let path = as_str(
        t.get("path")
            .ok_or_else(|| err(&format!("{key}.path"), "required, e.g. /"))?,
        &format!("{key}.path"),
    )?;
    let path: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let tree_key = format!("{key}.tree");
    let name = as_str(
        t.get("tree")
            .ok_or_else(|| err(&tree_key, "required, e.g. catalog"))?,
        &tree_key,
    )?;
    let args_key = format!("{key}.args");
    let empty = Map::new();
    let args = match t.get("args") {
        None | Some(Value::Null) => &empty,
        Some(a) => as_map(a, &args_key)?,
    };
    let arg = |k: &str| args.get(k).filter(|v| !v.is_null());
    let kind = match name {
        "catalog" | "tiled.catalog:from_uri" | "tiled.catalog:in_memory" => {
            check_keys(
                args,
                &args_key,
                &[
                    "uri",
                    "writable_storage",
                    "readable_storage",
                    "init_if_not_exists",
                    "top_level_access_blob",
                    "top_level_access_tags",
                    "echo",
                    "adapters_by_mimetype",
                    "mimetypes_by_file_ext",
                    "cache_settings",
                ],
            )?;
            for k in ["adapters_by_mimetype", "mimetypes_by_file_ext"] {
                if arg(k).is_some() {
                    return Err(err(
                        &format!("{args_key}.{k}"),
                        "custom Python adapters cannot run in tiled-rs; the built-in formats \
                         are listed in docs/serving-files.md",
                    ));
                }
            }
            let top_level_access_tags =
                match (arg("top_level_access_tags"), arg("top_level_access_blob")) {
                    (Some(_), Some(_)) => {
                        return Err(err(
                            &format!("{args_key}.top_level_access_blob"),
                            "give top_level_access_tags or top_level_access_blob, not both",
                        ));
                    }
                    (Some(v), None) => {
                        string_list(v, &format!("{args_key}.top_level_access_tags"))?
                    }
                    (None, Some(v)) => {
                        let key = format!("{args_key}.top_level_access_blob");
                        let blob = as_map(v, &key)?;
                        check_keys(blob, &key, &["tags"])?;
                        match blob.get("tags") {
                            Some(t) => string_list(t, &format!("{key}.tags"))?,
                            None => Vec::new(),
                        }
                    }
                    (None, None) => Vec::new(),
                };
            let uri = match arg("uri") {
                Some(v) => Some(as_str(v, &format!("{args_key}.uri"))?.to_string()),
                None if name == "tiled.catalog:in_memory" => None,
                None => {
                    return Err(err(
                        &format!("{args_key}.uri"),
                        "required: sqlite:///path.db or postgresql://...",
                    ));
                }
            };
            let writable_storage = match arg("writable_storage") {
                None => None,
                Some(Value::String(s)) => Some(storage_uri(s, base)),
                Some(Value::Array(list)) => match list.as_slice() {
                    [] => None,
                    [one] => Some(storage_uri(
                        as_str(one, &format!("{args_key}.writable_storage[0]"))?,
                        base,
                    )),
                    _ => {
                        return Err(err(
                            &format!("{args_key}.writable_storage"),
                            "give one writable storage (a directory or s3:// URI)",
                        ));
                    }
                },
                Some(other) => {
                    return Err(err(
                        &format!("{args_key}.writable_storage"),
                        format!("expected a directory or URI, got {other}"),
                    ));
                }
            };
            let readable_storage = match arg("readable_storage") {
                None => Vec::new(),
                Some(Value::String(s)) => vec![resolve(base, s)],
                Some(Value::Array(list)) => list
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        as_str(v, &format!("{args_key}.readable_storage[{i}]"))
                            .map(|s| resolve(base, s))
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(err(
                        &format!("{args_key}.readable_storage"),
                        format!("expected a list of directories, got {other}"),
                    ));
                }
            };
            let init = match arg("init_if_not_exists") {
                Some(v) => as_bool(v, &format!("{args_key}.init_if_not_exists"))?,
                None => false,
            };
            TreeKind::Catalog {
                uri,
                init,
                writable_storage,
                readable_storage,
                top_level_access_tags,
            }
        }
        "demo" | "tiled.examples.generated:tree" => {
            check_keys(args, &args_key, &[])?;
            TreeKind::Demo
        }
        "directory" | "files" => {
            check_keys(args, &args_key, &["directory", "watch"])?;
            let dir = as_str(
                arg("directory")
                    .ok_or_else(|| err(&format!("{args_key}.directory"), "required"))?,
                &format!("{args_key}.directory"),
            )?;
            let watch = match arg("watch") {
                Some(v) => as_bool(v, &format!("{args_key}.watch"))?,
                None => false,
            };
            TreeKind::Directory {
                path: resolve(base, dir),
                watch,
            }
        }
        other if other.contains(':') || other.contains('.') => {
            return Err(err(
                &tree_key,
                format!(
                    "{other:?} is a Python object, which tiled-rs cannot run; use `catalog` \
                     (a SQL catalog: tiled.catalog:from_uri), `directory` (files served where \
                     they lie) or `demo`"
                ),
            ));
        }
        other => {
            return Err(err(
                &tree_key,
                format!("unknown tree {other:?}; use catalog, directory or demo"),
            ));
        }
    };
    Ok(TreeConfig { path, kind })
}

/// A storage URI, with relative local paths made relative to the file.
fn storage_uri(s: &str, base: &Path) -> String {
    if s.contains("://") && !s.starts_with("file:") {
        s.to_string()
    } else {
        resolve(base, s).display().to_string()
    }
}

/// A PAM provider's `args` (upstream's: `service`, `confirmation_message`),
/// checking now that libpam can be loaded, so a machine without it fails
/// at startup rather than at the first login.
fn pam_provider(key: &str, args: &Value) -> Result<ProviderKind, ConfigError> {
    let mut service = tiled_auth::pam::DEFAULT_SERVICE.to_string();
    if !args.is_null() {
        let at = format!("{key}.args");
        let map = as_map(args, &at)?;
        check_keys(map, &at, &["service", "confirmation_message"])?;
        if let Some(v) = map.get("confirmation_message").filter(|v| !v.is_null()) {
            as_str(v, &format!("{at}.confirmation_message"))?;
        }
        if let Some(v) = map.get("service").filter(|v| !v.is_null()) {
            service = as_str(v, &format!("{at}.service"))?.to_string();
            if service.is_empty() || service.contains(['/', '\0']) {
                return Err(err(
                    &format!("{at}.service"),
                    "expected a PAM service name from /etc/pam.d, such as login",
                ));
            }
        }
    }
    tiled_auth::PamAuthenticator::available().map_err(|e| {
        err(
            &format!("{key}.authenticator"),
            format!("PAMAuthenticator needs Linux-PAM on this machine: {e}"),
        )
    })?;
    Ok(ProviderKind::Pam { service })
}

/// An OpenID Connect provider's `args` (upstream's `OIDCAuthenticator`:
/// `audience`, `client_id`, `client_secret`, `well_known_uri`, and
/// optionally `confirmation_message`, `redirect_on_success`,
/// `redirect_on_failure`, `user_id_claim`). Nothing is fetched here: the
/// provider is discovered at start-up in the background and at first use.
fn oidc_provider(key: &str, args: &Value) -> Result<ProviderKind, ConfigError> {
    let at = format!("{key}.args");
    let map = as_map(args, &at)?;
    check_keys(map, &at, &tiled_auth::oidc::ARGS)?;
    let optional = |k: &str| -> Result<Option<String>, ConfigError> {
        match map.get(k).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => {
                let s = as_str(v, &format!("{at}.{k}"))?;
                if s.trim().is_empty() {
                    return Err(err(&format!("{at}.{k}"), "must not be empty"));
                }
                Ok(Some(s.to_string()))
            }
        }
    };
    let required = |k: &str, what: &str| -> Result<String, ConfigError> {
        optional(k)?.ok_or_else(|| err(&format!("{at}.{k}"), format!("required: {what}")))
    };
    let url = |k: &str, v: Option<String>| -> Result<Option<String>, ConfigError> {
        match v {
            Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) => Err(err(
                &format!("{at}.{k}"),
                format!("expected an http(s) URL, got {u:?}"),
            )),
            other => Ok(other),
        }
    };
    let well_known_uri = url(
        "well_known_uri",
        Some(required(
            "well_known_uri",
            "the provider's discovery document (https://.../.well-known/openid-configuration)",
        )?),
    )?
    .unwrap_or_default();
    Ok(ProviderKind::Oidc(tiled_auth::oidc::OidcConfig {
        audience: required("audience", "the aud of the provider's id_tokens")?,
        client_id: required("client_id", "this server's client id at the provider")?,
        client_secret: required(
            "client_secret",
            "this server's client secret at the provider (use ${ENV_VAR})",
        )?,
        well_known_uri,
        confirmation_message: optional("confirmation_message")?,
        redirect_on_success: url("redirect_on_success", optional("redirect_on_success")?)?,
        redirect_on_failure: url("redirect_on_failure", optional("redirect_on_failure")?)?,
        user_id_claim: optional("user_id_claim")?
            .unwrap_or_else(|| tiled_auth::oidc::DEFAULT_USER_ID_CLAIM.to_string()),
    }))
}

fn authentication(auth: &Value, config: &mut ServiceConfig) -> Result<(), ConfigError> {
    let auth = as_map(auth, "authentication")?;
    check_keys(
        auth,
        "authentication",
        &[
            "providers",
            "secret_keys",
            "allow_anonymous_access",
            "single_user_api_key",
            "tiled_admins",
            "access_token_max_age",
            "refresh_token_max_age",
            "session_max_age",
            "confirmation_message",
        ],
    )?;
    if let Some(v) = auth.get("single_user_api_key").filter(|v| !v.is_null()) {
        config.single_user_api_key =
            Some(as_str(v, "authentication.single_user_api_key")?.to_string());
    }
    if let Some(v) = auth.get("allow_anonymous_access").filter(|v| !v.is_null()) {
        config.allow_anonymous_access = Some(as_bool(v, "authentication.allow_anonymous_access")?);
    }
    let providers = match auth.get("providers") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(p)) if p.is_empty() => return Ok(()),
        Some(Value::Array(p)) => p,
        Some(other) => {
            return Err(err(
                "authentication.providers",
                format!("expected a list, got {other}"),
            ));
        }
    };
    let mut mu = MultiUserConfig {
        database_init: true,
        ..MultiUserConfig::default()
    };
    for (i, p) in providers.iter().enumerate() {
        let key = format!("authentication.providers[{i}]");
        let p = as_map(p, &key)?;
        check_keys(p, &key, &["provider", "authenticator", "args"])?;
        let name = as_str(
            p.get("provider")
                .ok_or_else(|| err(&format!("{key}.provider"), "required: the provider's name"))?,
            &format!("{key}.provider"),
        )?
        .to_string();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(err(
                &format!("{key}.provider"),
                "use letters, digits, - and _ (it appears in URLs)",
            ));
        }
        let authenticator = as_str(
            p.get("authenticator").ok_or_else(|| {
                err(
                    &format!("{key}.authenticator"),
                    "required, e.g. tiled.authenticators:DictionaryAuthenticator",
                )
            })?,
            &format!("{key}.authenticator"),
        )?;
        let args = p.get("args").cloned().unwrap_or(Value::Null);
        let kind = match authenticator {
            "tiled.authenticators:DictionaryAuthenticator" | "dictionary" => {
                ProviderKind::Dictionary(args)
            }
            "tiled.authenticators:UsersFileAuthenticator" | "users_file" => {
                let path = args
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(&format!("{key}.args.path"), "required: the users file"))?;
                ProviderKind::UsersFile(PathBuf::from(path))
            }
            "tiled.authenticators:PAMAuthenticator" | "pam" => pam_provider(&key, &args)?,
            "tiled.authenticators:OIDCAuthenticator" | "oidc" => oidc_provider(&key, &args)?,
            other => {
                return Err(err(
                    &format!("{key}.authenticator"),
                    format!(
                        "{other:?} is a Python object, which tiled-rs cannot run; use \
                         tiled.authenticators:DictionaryAuthenticator or users_file"
                    ),
                ));
            }
        };
        if mu.providers.iter().any(|q| q.name == name) {
            return Err(err(
                &format!("{key}.provider"),
                format!("{name:?} is given twice"),
            ));
        }
        mu.providers.push(ProviderConfig { name, kind });
    }
    if let Some(keys) = auth.get("secret_keys").filter(|v| !v.is_null()) {
        let list = keys
            .as_array()
            .ok_or_else(|| err("authentication.secret_keys", "expected a list"))?;
        for (i, k) in list.iter().enumerate() {
            mu.secret_keys
                .push(as_str(k, &format!("authentication.secret_keys[{i}]"))?.to_string());
        }
    }
    let seconds = |k: &str| -> Result<Option<f64>, ConfigError> {
        match auth.get(k).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|s| *s > 0.0)
                .map(Some)
                .ok_or_else(|| err(&format!("authentication.{k}"), "expected seconds (> 0)")),
        }
    };
    mu.access_token_max_age = seconds("access_token_max_age")?;
    mu.refresh_token_max_age = seconds("refresh_token_max_age")?;
    mu.session_max_age = seconds("session_max_age")?;
    if let Some(admins) = auth.get("tiled_admins").filter(|v| !v.is_null()) {
        let list = admins
            .as_array()
            .ok_or_else(|| err("authentication.tiled_admins", "expected a list"))?;
        for (i, a) in list.iter().enumerate() {
            let key = format!("authentication.tiled_admins[{i}]");
            let a = as_map(a, &key)?;
            let get = |k: &str| -> Result<String, ConfigError> {
                Ok(as_str(
                    a.get(k)
                        .ok_or_else(|| err(&format!("{key}.{k}"), "required"))?,
                    &format!("{key}.{k}"),
                )?
                .to_string())
            };
            mu.admins.push((get("provider")?, get("id")?));
        }
    }
    config.multi_user = Some(mu);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServiceConfig, ConfigError> {
        from_value(&parse_text(text)?, Path::new("/etc/tiled"))
    }

    #[test]
    fn upstream_catalog_config() {
        let c = parse(
            "
trees:
  - path: /
    tree: catalog
    args:
      uri: sqlite+aiosqlite:///data/catalog.db
      writable_storage: data
      readable_storage: [/mnt/raw]
      init_if_not_exists: true
authentication:
  single_user_api_key: secret
  allow_anonymous_access: false
uvicorn:
  host: 0.0.0.0
  port: 8001
response_bytesize_limit: 300 MB
allow_origins: [https://example.org]
",
        )
        .unwrap();
        assert_eq!(
            c.trees,
            vec![TreeConfig {
                path: vec![],
                kind: TreeKind::Catalog {
                    uri: Some("sqlite+aiosqlite:///data/catalog.db".into()),
                    init: true,
                    writable_storage: Some("/etc/tiled/data".into()),
                    readable_storage: vec![PathBuf::from("/mnt/raw")],
                    top_level_access_tags: Vec::new(),
                },
            }]
        );
        assert_eq!(c.single_user_api_key.as_deref(), Some("secret"));
        assert_eq!(c.allow_anonymous_access, Some(false));
        assert_eq!(c.host.as_deref(), Some("0.0.0.0"));
        assert_eq!(c.port, Some(8001));
        assert_eq!(c.response_bytesize_limit, Some(300_000_000));
        assert_eq!(c.allow_origins, vec!["https://example.org".to_string()]);
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("trees:\n  - path: /\n    tree: catalog\n    args: {}\n").unwrap_err();
        assert_eq!(e.key, "trees[0].args.uri");
        let e = parse("trees:\n  - path: /\n    tree: my.module:make_tree\n").unwrap_err();
        assert_eq!(e.key, "trees[0].tree");
        assert!(e.message.contains("Python object"), "{e}");
        let e = parse("trees:\n  - path: /\n    tree: demo\nuvicorn:\n  port: lots\n").unwrap_err();
        assert_eq!(e.key, "uvicorn.port");
        let e = parse("trees:\n  - path: /\n    tree: demo\nbogus: 1\n").unwrap_err();
        assert_eq!(e.key, "bogus");
        let e = parse("trees:\n  - {path: /a, tree: demo}\n  - {path: /a/b, tree: demo}\n")
            .unwrap_err();
        assert_eq!(e.key, "trees");
        let e = parse(
            "trees: [{path: /, tree: demo}]\nauthentication:\n  providers:\n    - provider: saml\n      authenticator: tiled.authenticators:SAMLAuthenticator\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "authentication.providers[0].authenticator");
        let c = parse(
            "trees: [{path: /, tree: demo}]\nauthentication:\n  secret_keys: [k1]\n  access_token_max_age: 2\n  tiled_admins: [{provider: toy, id: alice}]\n  providers:\n    - provider: toy\n      authenticator: tiled.authenticators:DictionaryAuthenticator\n      args: {users_to_passwords: {alice: secret}}\ndatabase:\n  uri: sqlite:///auth.db\n",
        )
        .unwrap();
        let mu = c.multi_user.unwrap();
        assert_eq!(mu.providers[0].name, "toy");
        assert_eq!(mu.secret_keys, vec!["k1".to_string()]);
        assert_eq!(mu.access_token_max_age, Some(2.0));
        assert_eq!(mu.admins, vec![("toy".to_string(), "alice".to_string())]);
        assert_eq!(mu.database_uri.as_deref(), Some("sqlite:///auth.db"));
    }

    #[test]
    fn pam_provider() {
        let pam = |args: &str| {
            parse(&format!(
                "trees: [{{path: /, tree: demo}}]\nauthentication:\n  providers:\n    - provider: pam\n      authenticator: tiled.authenticators:PAMAuthenticator\n{args}"
            ))
        };
        // Argument mistakes are found before libpam is looked for.
        let e = pam("      args: {servce: login}\n").unwrap_err();
        assert_eq!(e.key, "authentication.providers[0].args.servce");
        assert!(e.message.contains("unknown key"), "{e}");
        let e = pam("      args: {service: [login]}\n").unwrap_err();
        assert_eq!(e.key, "authentication.providers[0].args.service");
        let e = pam("      args: {service: ../shadow}\n").unwrap_err();
        assert_eq!(e.key, "authentication.providers[0].args.service");
        let service = |c: ServiceConfig| match &c.multi_user.unwrap().providers[0].kind {
            ProviderKind::Pam { service } => service.clone(),
            other => panic!("{other:?}"),
        };
        if tiled_auth::PamAuthenticator::available().is_ok() {
            assert_eq!(service(pam("").unwrap()), "login");
            assert_eq!(
                service(pam("      args: {service: other}\n").unwrap()),
                "other"
            );
            let c = pam("      args: {service: sshd, confirmation_message: hi}\n").unwrap();
            assert_eq!(service(c), "sshd");
        } else {
            // No libpam here: refused at config time, naming the key.
            let e = pam("      args: {service: other}\n").unwrap_err();
            assert_eq!(e.key, "authentication.providers[0].authenticator");
            assert!(e.message.contains("libpam"), "{e}");
        }
    }

    #[test]
    fn oidc_provider() {
        let oidc = |args: &str| {
            parse(&format!(
                "trees: [{{path: /, tree: demo}}]\nauthentication:\n  providers:\n    - provider: orcid\n      authenticator: tiled.authenticators:OIDCAuthenticator\n      args:\n{args}"
            ))
        };
        let full = "        audience: tiled\n        client_id: tiled\n        client_secret: s3cret\n        well_known_uri: https://idp.example/.well-known/openid-configuration\n";
        let c = oidc(full).unwrap();
        let ProviderKind::Oidc(o) = &c.multi_user.unwrap().providers[0].kind else {
            panic!("not an OIDC provider")
        };
        assert_eq!(o.client_secret, "s3cret");
        assert_eq!(o.user_id_claim, "sub");
        assert_eq!(o.redirect_on_success, None);
        let c = oidc(&format!(
            "{full}        user_id_claim: email\n        confirmation_message: 'You are {{id}}'\n        redirect_on_failure: https://app.example/failed\n"
        ))
        .unwrap();
        let ProviderKind::Oidc(o) = &c.multi_user.unwrap().providers[0].kind else {
            panic!("not an OIDC provider")
        };
        assert_eq!(o.user_id_claim, "email");
        assert_eq!(o.confirmation_message.as_deref(), Some("You are {id}"));
        assert!(!format!("{o:?}").contains("s3cret"));
        let e = oidc(&format!("{full}        scopes: [email]\n")).unwrap_err();
        assert_eq!(e.key, "authentication.providers[0].args.scopes");
        assert!(e.message.contains("unknown key"), "{e}");
        let e =
            oidc("        audience: tiled\n        client_id: tiled\n        client_secret: x\n")
                .unwrap_err();
        assert_eq!(e.key, "authentication.providers[0].args.well_known_uri");
        let e = oidc(&full.replace("https://idp", "idp")).unwrap_err();
        assert_eq!(e.key, "authentication.providers[0].args.well_known_uri");
        let e = oidc(&full.replace("client_secret: s3cret", "client_secret: ''")).unwrap_err();
        assert_eq!(e.key, "authentication.providers[0].args.client_secret");
    }

    #[test]
    fn env_interpolation() {
        let lookup = |n: &str| (n == "KEY").then(|| "s3cret".to_string());
        assert_eq!(expand_env("a: ${KEY}!", lookup).unwrap(), "a: s3cret!");
        let e = expand_env("a: ${NOPE}", lookup).unwrap_err();
        assert!(e.message.contains("NOPE"), "{e}");
        assert!(expand_env("a: ${KEY", lookup).is_err());
        assert!(expand_env("a: ${BAD NAME}", lookup).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("300 MB"), Some(300_000_000));
        assert_eq!(parse_size("1KiB"), Some(1024));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("12 parsecs"), None);
    }
}
