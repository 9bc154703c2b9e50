//! `tiled login`, `tiled logout`, `tiled api-key create|list|revoke` and
//! `tiled admin hash-password`: the terminal side of multi-user
//! authentication (spec §9.3). Tokens are kept per server in
//! `$TILED_TOKEN_DIR` (default `~/.config/tiled-rs/tokens`), one
//! owner-only file per `host:port`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where to find the server and how to authenticate to it.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// The server, e.g. `http://localhost:8000`.
    #[arg(env = "TILED_URI")]
    pub uri: String,
    /// Use this API key instead of the saved login.
    #[arg(long, env = "TILED_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The login provider (default: the server's only one).
    #[arg(long)]
    pub provider: Option<String>,
    /// The user name (asked for if not given; unused with OpenID Connect
    /// providers, where the user logs in in a browser).
    #[arg(long, short)]
    pub username: Option<String>,
    /// Read the password from standard input (one line) instead of
    /// asking for it (or use TILED_PASSWORD).
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key for the logged-in principal; prints its secret.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// Restrict the key to these scopes (repeatable; default: inherit
        /// the principal's).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Seconds until the key expires.
        #[arg(long)]
        expires_in: Option<f64>,
        /// A note for humans.
        #[arg(long)]
        note: Option<String>,
    },
    /// List the principal's API keys (first eight characters only).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke an API key by its first eight characters.
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        first_eight: String,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Print the argon2id hash of a password read from standard input, for
    /// a users file (`name:HASH` lines).
    HashPassword,
    /// Compile a tag file (upstream's format: roles, tags, tag_owners) into
    /// a catalog's access tag tables, where a policy configured with
    /// `access_tags_parser` reads them. Replaces what the catalog held, in
    /// one transaction; running servers pick the change up within seconds.
    CompileTags {
        /// The tag file (YAML).
        tags: std::path::PathBuf,
        /// The catalog: `sqlite:///path.db` or `postgresql://...`.
        #[arg(long)]
        catalog: String,
    },
    /// Create the authentication database's tables (upstream's
    /// `tiled admin initialize-database`); an existing one is upgraded.
    InitializeDatabase {
        /// `sqlite:///auth.db` or `postgresql://...`.
        database_uri: String,
    },
    /// Upgrade the authentication database's tables to this version.
    UpgradeDatabase {
        /// `sqlite:///auth.db` or `postgresql://...`.
        database_uri: String,
    },
    /// Read a service configuration and report its first mistake, naming
    /// the key (exit status 1), or that it is valid.
    CheckConfig {
        /// The YAML file (or a directory of them).
        config: std::path::PathBuf,
    },
    /// List principals (users and services) with their identities, roles,
    /// keys and sessions, as JSON (admins: `read:principals`).
    ListPrincipals {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Show one principal as JSON (admins: `read:principals`).
    ShowPrincipal {
        #[command(flatten)]
        server: ServerArgs,
        /// The principal's UUID.
        uuid: String,
    },
    /// Create a service principal with a role and print it as JSON (admins:
    /// `write:principals`); give it keys with `tiled api-key` as an admin.
    CreateServicePrincipal {
        #[command(flatten)]
        server: ServerArgs,
        /// The role: `user` or `admin`.
        #[arg(long, default_value = "user")]
        role: String,
    },
}

fn api_base(uri: &str) -> String {
    let base = uri.trim_end_matches('/');
    if base.ends_with("/api/v1") {
        base.to_string()
    } else {
        format!("{base}/api/v1")
    }
}

fn token_file(uri: &str) -> Result<PathBuf, String> {
    let dir = match std::env::var_os("TILED_TOKEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").ok_or("HOME is not set; set TILED_TOKEN_DIR")?;
            PathBuf::from(home).join(".config/tiled-rs/tokens")
        }
    };
    let url = reqwest::Url::parse(uri).map_err(|e| format!("{uri}: {e}"))?;
    let name = format!(
        "{}_{}.json",
        url.host_str().unwrap_or("localhost"),
        url.port_or_known_default().unwrap_or(0)
    );
    Ok(dir.join(name))
}

fn save_tokens(uri: &str, tokens: &Value) -> Result<PathBuf, String> {
    let path = token_file(uri)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = tokens.to_string();
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    #[cfg(not(unix))]
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn load_tokens(uri: &str) -> Result<Option<Value>, String> {
    let path = token_file(uri)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

async fn check(response: reqwest::Response) -> Result<Value, String> {
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        if text.is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_str(&text).map_err(|e| format!("bad answer: {e}"));
    }
    let detail = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("detail").cloned())
        .map_or(text, |d| d.as_str().map_or(d.to_string(), str::to_string));
    Err(format!("{status}: {detail}"))
}

fn read_line(prompt: &str, hidden: bool) -> Result<String, String> {
    if hidden {
        return rpassword::prompt_password(prompt).map_err(|e| e.to_string());
    }
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// `tiled login`.
///
/// # Errors
/// Connection failures and refused credentials.
pub async fn login(args: LoginArgs) -> Result<(), String> {
    let api = api_base(&args.server.uri);
    let client = reqwest::Client::new();
    let about = check(
        client
            .get(format!("{api}/"))
            .send()
            .await
            .map_err(|e| format!("{api}: {e}"))?,
    )
    .await?;
    let providers = about["authentication"]["providers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let provider = match (&args.provider, providers.as_slice()) {
        (_, []) => {
            return Err(
                "this server has no login providers: it is single-user; use its API key".into(),
            );
        }
        (Some(name), all) => all
            .iter()
            .find(|p| p["provider"] == name.as_str())
            .cloned()
            .ok_or_else(|| format!("no provider {name:?} on this server"))?,
        (None, [one]) => one.clone(),
        (None, all) => {
            let names: Vec<&str> = all.iter().filter_map(|p| p["provider"].as_str()).collect();
            return Err(format!(
                "choose a provider with --provider: {}",
                names.join(", ")
            ));
        }
    };
    let endpoint = provider["links"]["auth_endpoint"]
        .as_str()
        .ok_or("the provider has no auth_endpoint")?
        .to_string();
    if provider["mode"] == "external" {
        // An OpenID Connect provider: log in in a browser, approve here.
        let tokens = device_code_login(&client, &endpoint).await?;
        let path = save_tokens(&args.server.uri, &tokens)?;
        let id = tokens["identity"]["id"].as_str().unwrap_or("?");
        eprintln!(
            "logged in as {id} ({}); tokens saved in {}",
            provider["provider"].as_str().unwrap_or("?"),
            path.display()
        );
        if let Some(message) = provider["confirmation_message"]
            .as_str()
            .filter(|m| !m.is_empty())
        {
            eprintln!("{}", message.replace("{id}", id));
        }
        return Ok(());
    }
    let username = match args.username {
        Some(u) => u,
        None => read_line("Username: ", false)?,
    };
    let password = if args.password_stdin {
        read_line("", false)?
    } else if let Ok(p) = std::env::var("TILED_PASSWORD") {
        p
    } else {
        read_line("Password: ", true)?
    };
    let tokens = check(
        client
            .post(&endpoint)
            .form(&[
                ("grant_type", "password"),
                ("username", username.as_str()),
                ("password", password.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?,
    )
    .await?;
    let path = save_tokens(&args.server.uri, &tokens)?;
    eprintln!(
        "logged in as {username} ({}); tokens saved in {}",
        provider["provider"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(())
}

/// The device-code grant of external (OpenID Connect) providers, as the
/// Python client's `device_code_grant` does it: start at the provider's
/// `auth_endpoint`, print the link and the code, poll until the user has
/// approved the code in a browser.
async fn device_code_login(client: &reqwest::Client, endpoint: &str) -> Result<Value, String> {
    let start = check(
        client
            .post(endpoint)
            .send()
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?,
    )
    .await?;
    let field = |k: &str| {
        start[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("the server's device-code answer has no {k}"))
    };
    let (link, user_code) = (field("authorization_uri")?, field("user_code")?);
    let (poll_url, device_code) = (field("verification_uri")?, field("device_code")?);
    let interval = start["interval"].as_f64().unwrap_or(5.0).clamp(1.0, 60.0);
    let expires_in = start["expires_in"].as_f64().unwrap_or(900.0).max(1.0);
    eprintln!(
        "\nYou have {} minutes to visit this URL\n\n{link}\n\nand enter the code:\n\n{user_code}\n",
        (expires_in / 60.0).floor()
    );
    eprint!("Waiting...");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(expires_in);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs_f64(interval)).await;
        if std::time::Instant::now() > deadline {
            eprintln!();
            return Err("the code expired before the login was approved".into());
        }
        let response = client
            .post(&poll_url)
            .json(&json!({
                "device_code": device_code,
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            }))
            .send()
            .await
            .map_err(|e| format!("{poll_url}: {e}"))?;
        if response.status() == reqwest::StatusCode::BAD_REQUEST {
            let text = response.text().await.map_err(|e| e.to_string())?;
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if body["detail"]["error"] == "authorization_pending" {
                eprint!(".");
                continue;
            }
            eprintln!();
            return Err(format!("400 Bad Request: {text}"));
        }
        eprintln!();
        return check(response).await;
    }
}

/// `tiled logout`: revoke the session and forget its tokens.
///
/// # Errors
/// Connection failures.
pub async fn logout(server: ServerArgs) -> Result<(), String> {
    let Some(tokens) = load_tokens(&server.uri)? else {
        eprintln!("not logged in to {}", server.uri);
        return Ok(());
    };
    let api = api_base(&server.uri);
    if let Some(refresh) = tokens["refresh_token"].as_str() {
        let r = reqwest::Client::new()
            .post(format!("{api}/auth/session/revoke"))
            .json(&json!({ "refresh_token": refresh }))
            .send()
            .await;
        if let Err(e) = r {
            eprintln!("could not reach the server to revoke the session: {e}");
        }
    }
    let path = token_file(&server.uri)?;
    std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("logged out of {}", server.uri);
    Ok(())
}

/// A client request with the saved login (refreshed when its access token
/// has expired) or the given API key.
async fn authorized(
    server: &ServerArgs,
    build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> Result<Value, String> {
    let api = api_base(&server.uri);
    let client = reqwest::Client::new();
    if let Some(key) = &server.api_key {
        let r = build(&client, &api)
            .header("Authorization", format!("Apikey {key}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        return check(r).await;
    }
    let mut tokens = load_tokens(&server.uri)?
        .ok_or_else(|| format!("not logged in: run `tiled login {}` first", server.uri))?;
    for attempt in 0..2 {
        let access = tokens["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let r = build(&client, &api)
            .header("Authorization", format!("Bearer {access}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != reqwest::StatusCode::UNAUTHORIZED || attempt == 1 {
            return check(r).await;
        }
        let refresh = tokens["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let r = client
            .post(format!("{api}/auth/session/refresh"))
            .json(&json!({ "refresh_token": refresh }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let fresh = check(r)
            .await
            .map_err(|e| format!("the session cannot be refreshed ({e}); log in again"))?;
        save_tokens(&server.uri, &fresh)?;
        tokens = fresh;
    }
    Err("not authorized".into())
}

/// `tiled api-key ...`.
///
/// # Errors
/// Connection failures and refusals.
pub async fn api_key(command: ApiKeyCommand) -> Result<(), String> {
    match command {
        ApiKeyCommand::Create {
            server,
            scopes,
            expires_in,
            note,
        } => {
            let body = json!({
                "scopes": (!scopes.is_empty()).then_some(scopes),
                "expires_in": expires_in,
                "note": note,
                "access_tags": null,
            });
            let key = authorized(&server, |c, api| {
                c.post(format!("{api}/auth/apikey")).json(&body)
            })
            .await?;
            println!("{}", key["secret"].as_str().unwrap_or_default());
            eprintln!(
                "first eight: {}  scopes: {}  expires: {}",
                key["first_eight"].as_str().unwrap_or("?"),
                key["scopes"],
                key["expiration_time"]
            );
        }
        ApiKeyCommand::List { server } => {
            let me = authorized(&server, |c, api| c.get(format!("{api}/auth/whoami"))).await?;
            for k in me["api_keys"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{}  scopes={}  expires={}  note={}",
                    k["first_eight"].as_str().unwrap_or("?"),
                    k["scopes"],
                    k["expiration_time"],
                    k["note"]
                );
            }
        }
        ApiKeyCommand::Revoke {
            server,
            first_eight,
        } => {
            authorized(&server, |c, api| {
                c.delete(format!("{api}/auth/apikey"))
                    .query(&[("first_eight", first_eight.as_str())])
            })
            .await?;
            eprintln!("revoked {first_eight}");
        }
    }
    Ok(())
}

/// `tiled admin ...`.
///
/// # Errors
/// Unreadable input, database or connection failures, refusals.
pub async fn admin(command: AdminCommand) -> Result<(), String> {
    let show = |v: &Value| serde_json::to_string_pretty(v).map_err(|e| e.to_string());
    match command {
        AdminCommand::ListPrincipals {
            server,
            offset,
            limit,
        } => {
            let list = authorized(&server, |c, api| {
                c.get(format!("{api}/auth/principal"))
                    .query(&[("offset", offset), ("limit", limit)])
            })
            .await?;
            println!("{}", show(&list)?);
            Ok(())
        }
        AdminCommand::ShowPrincipal { server, uuid } => {
            let one = authorized(&server, |c, api| {
                c.get(format!("{api}/auth/principal/{}", urlencode(&uuid)))
            })
            .await?;
            println!("{}", show(&one)?);
            Ok(())
        }
        AdminCommand::CreateServicePrincipal { server, role } => {
            let made = authorized(&server, |c, api| {
                c.post(format!("{api}/auth/principal"))
                    .query(&[("role", role.as_str())])
            })
            .await?;
            println!("{}", show(&made)?);
            Ok(())
        }
        // The rest touch files and databases: off the async workers (the
        // PostgreSQL client runs its own runtime).
        local => tokio::task::spawn_blocking(move || admin_local(local))
            .await
            .map_err(|e| e.to_string())?,
    }
}

/// Percent-encode one path segment.
fn urlencode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The `tiled admin` commands that need no server.
fn admin_local(command: AdminCommand) -> Result<(), String> {
    match command {
        AdminCommand::ListPrincipals { .. }
        | AdminCommand::ShowPrincipal { .. }
        | AdminCommand::CreateServicePrincipal { .. } => {
            return Err("this command talks to a server".into());
        }
        AdminCommand::InitializeDatabase { database_uri }
        | AdminCommand::UpgradeDatabase { database_uri } => {
            let uri = tiled_auth::CatalogUri::parse(&database_uri).map_err(|e| e.to_string())?;
            let store = tiled_auth::AuthStore::open(&uri, true).map_err(|e| e.to_string())?;
            eprintln!(
                "the authentication database is at schema version {}",
                store.schema_version().map_err(|e| e.to_string())?
            );
        }
        AdminCommand::CheckConfig { config } => {
            crate::config::load(&config).map_err(|e| format!("{}: {e}", config.display()))?;
            eprintln!("{}: valid", config.display());
        }
        AdminCommand::HashPassword => {
            let password = read_line("", false)?;
            if password.is_empty() {
                return Err("give the password on standard input".into());
            }
            println!(
                "{}",
                tiled_auth::hash_password(&password).map_err(|e| e.to_string())?
            );
        }
        AdminCommand::CompileTags { tags, catalog } => {
            let table = crate::compile_tag_file(&tags, &tiled_server::access::all_scopes())?;
            let uri = tiled_catalog::CatalogUri::parse(&catalog).map_err(|e| e.to_string())?;
            let catalog = tiled_catalog::Catalog::open(&uri, false).map_err(|e| e.to_string())?;
            let rows = crate::tag_rows_from_table(&table);
            catalog
                .replace_access_tags(&rows)
                .map_err(|e| e.to_string())?;
            eprintln!(
                "compiled {} tags ({} grants, {} owners) into the catalog",
                rows.tags.len(),
                rows.grants.len(),
                rows.owners.len()
            );
        }
    }
    Ok(())
}
