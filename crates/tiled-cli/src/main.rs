//! `tiled`: the command line of tiled-rs.
//!
//! `tiled serve demo` serves the generated demo tree; later subcommands
//! (catalog, directory, config, register, login) follow upstream's names.

mod config;
mod login;
mod remote;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use rand::Rng;
use tiled_server::{
    AuthConfig, DEFAULT_DATA_MEMORY_BUDGET, DEFAULT_RESPONSE_BYTESIZE_LIMIT, ServerConfig,
};

#[derive(Parser)]
#[command(
    name = "tiled",
    version,
    about = "A fast server for structured scientific data (Tiled-compatible)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve data over HTTP.
    Serve {
        #[command(subcommand)]
        what: Serve,
    },
    /// Manage a SQL catalog's database.
    Catalog {
        #[command(subcommand)]
        what: CatalogCommand,
    },
    /// Register the files under PATH in a catalog database, with the same
    /// mapping as `serve directory`; serve it with
    /// `tiled serve catalog URI --readable-storage PATH`.
    Register(RegisterArgs),
    /// Log in to a multi-user server (a password, or for OpenID Connect
    /// providers a code approved in a browser); the tokens are saved for
    /// `tiled api-key` and `tiled logout`.
    Login(login::LoginArgs),
    /// End the saved session with a server and forget its tokens.
    Logout(login::ServerArgs),
    /// Create, list or revoke API keys of the logged-in principal.
    #[command(name = "api-key")]
    ApiKey {
        #[command(subcommand)]
        what: login::ApiKeyCommand,
    },
    /// Administration helpers.
    Admin {
        #[command(subcommand)]
        what: login::AdminCommand,
    },
}

#[derive(Args)]
struct RegisterArgs {
    /// The catalog: `sqlite:///path.db` or `postgresql://...` (created if
    /// new), or a running server `http(s)://host:port` (its write API; the
    /// files must lie in the server's --readable-storage).
    uri: String,
    /// API key for an `http(s)://` server (needs write access).
    #[arg(long, env = "TILED_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The directory to register.
    path: std::path::PathBuf,
    /// Register under this container path (`a/b`), created if missing.
    #[arg(long, default_value = "")]
    prefix: String,
    #[command(flatten)]
    walk: WalkArgs,
}

#[derive(Args)]
struct WalkArgs {
    /// Keep file extensions in keys (`a.h5` instead of `a`).
    #[arg(long)]
    keep_ext: bool,
    /// Map an extension to a mimetype, e.g. `--ext .dat=text/csv`
    /// (repeatable).
    #[arg(long = "ext", value_name = "EXT=MIMETYPE")]
    ext: Vec<String>,
    /// Follow symbolic links that lead outside the directory (refused by
    /// default).
    #[arg(long)]
    follow_external_links: bool,
    /// Keep watching: new, changed and removed files are picked up within
    /// about a second.
    #[arg(long)]
    watch: bool,
}

impl WalkArgs {
    fn options(&self) -> Result<tiled_files::walk::WalkOptions, String> {
        let mut mimetypes_by_ext = std::collections::HashMap::new();
        for item in &self.ext {
            let (ext, mime) = item
                .split_once('=')
                .ok_or_else(|| format!("--ext {item:?}: use EXT=MIMETYPE, e.g. .dat=text/csv"))?;
            let ext = format!(".{}", ext.trim_start_matches('.').to_ascii_lowercase());
            mimetypes_by_ext.insert(ext, mime.to_string());
        }
        Ok(tiled_files::walk::WalkOptions {
            keep_ext: self.keep_ext,
            mimetypes_by_ext,
            follow_external_links: self.follow_external_links,
        })
    }
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Create the catalog's tables in an empty database.
    Init {
        /// `sqlite:///path.db` or `postgresql://user@host:port/db`.
        uri: String,
    },
    /// Apply the migrations this build knows to an existing catalog.
    Upgrade {
        /// `sqlite:///path.db` or `postgresql://user@host:port/db`.
        uri: String,
    },
    /// Index a metadata key so filters (eq, comparison) and sorts on it are
    /// index scans within a container (upstream indexes equality only).
    Index {
        /// `sqlite:///path.db` or `postgresql://user@host:port/db`.
        uri: String,
        /// Dotted metadata key, e.g. `start.time`.
        key: String,
        /// The type of the values the index serves.
        #[arg(long = "type", value_enum, default_value = "number")]
        value_type: IndexType,
        /// Also index equality on KEY sorted by this other key (e.g.
        /// `--then-sort-by start.time` for "the newest run of a beamline").
        #[arg(long)]
        then_sort_by: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum IndexType {
    Number,
    Text,
}

#[derive(Subcommand)]
enum Serve {
    /// Serve the generated demo tree (see docs/demo.md). Public by default,
    /// like upstream's `tiled serve demo`.
    Demo(ServeArgs),
    /// Serve a SQL catalog (SQLite or PostgreSQL). Private by default: the
    /// API key printed at start-up is needed unless --public.
    Catalog(CatalogArgs),
    /// Serve a directory of files (HDF5, CSV, Parquet, Arrow, Excel, NPY,
    /// TIFF, PNG, JPEG), registered into a catalog in the background while
    /// the server already answers. Private by default, like upstream.
    Directory(DirectoryArgs),
    /// Serve what a YAML config file (upstream's schema) says: trees
    /// (catalog, directory, demo) mounted at paths, authentication, uvicorn
    /// host/port, limits. See docs/configuration.md.
    Config(ConfigArgs),
}

#[derive(Args)]
struct ConfigArgs {
    /// The config file (or a directory of *.yml files).
    #[arg(env = "TILED_CONFIG")]
    path: std::path::PathBuf,
    /// Address to bind (overrides `uvicorn.host`).
    #[arg(long, env = "TILED_HOST")]
    host: Option<String>,
    /// Port to bind (overrides `uvicorn.port`).
    #[arg(long, env = "TILED_PORT")]
    port: Option<u16>,
    /// The single user's API key (overrides
    /// `authentication.single_user_api_key`).
    #[arg(long, env = "TILED_SINGLE_USER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Let anyone read without an API key (overrides
    /// `authentication.allow_anonymous_access`).
    #[arg(long, env = "TILED_ALLOW_ANONYMOUS_ACCESS")]
    public: Option<bool>,
    /// Largest response body in bytes (overrides `response_bytesize_limit`).
    #[arg(long, env = "TILED_RESPONSE_BYTESIZE_LIMIT")]
    response_bytesize_limit: Option<usize>,
}

#[derive(Args)]
struct DirectoryArgs {
    /// The directory to serve.
    path: std::path::PathBuf,
    /// Catalog to register into (default: a temporary SQLite catalog).
    #[arg(long)]
    catalog: Option<String>,
    #[command(flatten)]
    walk: WalkArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args)]
struct CatalogArgs {
    /// `sqlite:///path.db` (relative), `sqlite:////abs/path.db`, or
    /// `postgresql://user@host:port/db` (`+asyncpg`/`+aiosqlite` accepted).
    #[arg(env = "TILED_CATALOG_URI")]
    uri: Option<String>,
    /// Use a new SQLite catalog in a temporary directory.
    #[arg(long, conflicts_with = "uri")]
    temp: bool,
    /// Create the schema if the database has none (or upgrade it).
    #[arg(long)]
    init: bool,
    /// Load the demo tree into the catalog first (its data stays generated);
    /// with --temp this serves the demo through SQL.
    #[arg(long)]
    demo: bool,
    /// A directory whose files the catalog's data sources may read
    /// (repeatable; as upstream's `readable_storage`). Files elsewhere are
    /// refused.
    #[arg(long = "readable-storage", value_name = "DIR")]
    readable_storage: Vec<std::path::PathBuf>,
    /// Where arrays (Zarr) and tables (Parquet) created through the write
    /// API are stored: a directory, `file:///...` or
    /// `s3://bucket[/prefix]?endpoint=...&region=...` (credentials from
    /// AWS_* variables); with --temp, a `data` directory beside the
    /// temporary catalog. Without it only containers can be created.
    #[arg(
        long = "writable-storage",
        value_name = "DIR|URI",
        env = "TILED_WRITABLE_STORAGE"
    )]
    writable_storage: Option<String>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1", env = "TILED_HOST")]
    host: String,
    /// Port to bind.
    #[arg(long, default_value_t = 8000, env = "TILED_PORT")]
    port: u16,
    /// Let anyone read without an API key (the default for `serve demo`).
    #[arg(long, conflicts_with = "private")]
    public: bool,
    /// Require the API key for reading too.
    #[arg(long)]
    private: bool,
    /// The single user's API key (random if not given; printed at start-up).
    #[arg(long, env = "TILED_SINGLE_USER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Largest response body in bytes, checked before any data is read.
    #[arg(long, env = "TILED_RESPONSE_BYTESIZE_LIMIT", default_value_t = DEFAULT_RESPONSE_BYTESIZE_LIMIT)]
    response_bytesize_limit: usize,
    /// Bytes of data responses that may be in memory at once; further data
    /// requests wait.
    #[arg(long, env = "TILED_DATA_MEMORY_BUDGET", default_value_t = DEFAULT_DATA_MEMORY_BUDGET)]
    data_memory_budget: usize,
    /// Origins allowed to call the API from browsers (CORS), repeatable or
    /// comma-separated; `*` for any. CORS is off without it.
    #[arg(
        long = "allow-origin",
        env = "TILED_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    allow_origins: Vec<String>,
}

fn random_key() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// mimalloc instead of glibc malloc: per-thread heaps keep the many small
/// allocations of JSON building fast, and freed 8 MiB blocks go back to the
/// system instead of piling up in glibc's per-thread arenas. (Measured:
/// capping glibc's arenas cut search throughput by 4x; a low
/// M_MMAP_THRESHOLD halved block throughput.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads for reads and encoding. Data work is CPU- or disk-bound, so a
/// few threads per core keep the machine busy; more only add per-thread
/// allocator heaps (measured with 16 concurrent table reads: peak RSS
/// ~210 MB with tokio's default of up to 512 threads, ~95 MB with 8,
/// ~90 MB with 4, at the same throughput).
const BLOCKING_THREADS: usize = 4;
/// Blocking threads when serving a catalog (see `main`).
const CATALOG_BLOCKING_THREADS: usize = 64;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // A catalog's lookups and searches block on the database: they get a
    // larger pool (they hold little memory).
    let blocking_threads = match &cli.command {
        Command::Serve {
            what: Serve::Catalog(_) | Serve::Directory(_) | Serve::Config(_),
        } => CATALOG_BLOCKING_THREADS,
        _ => BLOCKING_THREADS,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(blocking_threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            what: Serve::Demo(args),
        } => serve(args, tiled_demo::demo_tree(), None, false, true, None).await,
        Command::Serve {
            what: Serve::Catalog(args),
        } => {
            let root = tokio::task::spawn_blocking(move || open_catalog(&args).map(|r| (r, args)))
                .await
                .map_err(|e| e.to_string())??;
            let ((root, writer), args) = root;
            serve(args.serve, root, Some(writer), true, false, None).await
        }
        Command::Serve {
            what: Serve::Directory(args),
        } => {
            let root =
                tokio::task::spawn_blocking(move || serve_directory(&args).map(|r| (r, args)))
                    .await
                    .map_err(|e| e.to_string())??;
            let (root, args) = root;
            serve(args.serve, root, None, true, false, None).await
        }
        Command::Serve {
            what: Serve::Config(args),
        } => serve_config(args).await,
        Command::Login(args) => login::login(args).await,
        Command::Logout(args) => login::logout(args).await,
        Command::ApiKey { what } => login::api_key(what).await,
        Command::Admin { what } => login::admin(what).await,
        Command::Register(args) => tokio::task::spawn_blocking(move || register(&args))
            .await
            .map_err(|e| e.to_string())?,
        Command::Catalog { what } => tokio::task::spawn_blocking(move || catalog_command(what))
            .await
            .map_err(|e| e.to_string())?,
    }
}

fn catalog_uri(text: &str) -> Result<tiled_catalog::CatalogUri, String> {
    tiled_catalog::CatalogUri::parse(text).map_err(|e| e.to_string())
}

fn catalog_command(what: CatalogCommand) -> Result<(), String> {
    match what {
        CatalogCommand::Init { uri } => {
            tiled_catalog::Catalog::open(&catalog_uri(&uri)?, true).map_err(|e| e.to_string())?;
            eprintln!(
                "catalog initialized (schema version {})",
                tiled_catalog::schema::LATEST
            );
        }
        CatalogCommand::Upgrade { uri } => {
            let uri = catalog_uri(&uri)?;
            let (found, applied) =
                tiled_catalog::Catalog::migrate(&uri).map_err(|e| e.to_string())?;
            if applied.is_empty() {
                eprintln!("catalog is up to date (schema version {found})");
            } else {
                eprintln!(
                    "catalog upgraded from schema version {found} to {} (applied {applied:?})",
                    tiled_catalog::schema::LATEST
                );
            }
        }
        CatalogCommand::Index {
            uri,
            key,
            value_type,
            then_sort_by,
        } => {
            let catalog = tiled_catalog::Catalog::open(&catalog_uri(&uri)?, false)
                .map_err(|e| e.to_string())?;
            let t = match value_type {
                IndexType::Number => tiled_catalog::sql::ValueType::Number,
                IndexType::Text => tiled_catalog::sql::ValueType::Text,
            };
            for statement in catalog
                .create_metadata_index(&key, t, then_sort_by.as_deref())
                .map_err(|e| e.to_string())?
            {
                eprintln!("{statement}");
            }
        }
    }
    Ok(())
}

/// Connect to (or create) the catalog, optionally load the demo into it,
/// and return its root node.
/// The catalog's root and a writer into it (the API key's holder writes
/// metadata through it).
type CatalogTree = (tiled_adapters::Node, Arc<dyn tiled_adapters::TreeWriter>);

fn open_catalog(args: &CatalogArgs) -> Result<CatalogTree, String> {
    let mut catalog = if args.temp {
        tiled_catalog::Catalog::temporary()
    } else {
        let uri = args
            .uri
            .as_deref()
            .ok_or("give a catalog URI (sqlite:///path.db, postgresql://...) or --temp")?;
        tiled_catalog::Catalog::open(&catalog_uri(uri)?, args.init)
    }
    .map_err(|e| match e {
        tiled_catalog::CatalogError::OldSchema { found: 0, .. } => {
            "this database holds no catalog yet; pass --init (or run `tiled catalog init URI`)"
                .to_string()
        }
        other => other.to_string(),
    })?;
    let writable = match (&args.writable_storage, catalog.temporary_dir()) {
        (Some(uri), _) => Some(uri.clone()),
        (None, Some(temp)) => Some(temp.join("data").display().to_string()),
        (None, None) => None,
    };
    let writable = writable
        .map(|uri| {
            tiled_storage::Storage::parse(&uri).map_err(|e| format!("writable storage {uri}: {e}"))
        })
        .transpose()?;
    if let Some(storage) = &writable {
        tracing::info!("writable storage: {}", storage.root_uri());
        catalog.set_writable_storage(storage.clone());
    }
    let readable = args
        .readable_storage
        .iter()
        .map(|d| {
            d.canonicalize()
                .map_err(|e| format!("{}: {e}", d.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !readable.is_empty() || writable.is_some() {
        let mut roots = readable.clone();
        roots.extend(
            writable
                .as_ref()
                .and_then(|s| s.local_root())
                .map(std::path::Path::to_path_buf),
        );
        for f in tiled_files::formats() {
            catalog.register_opener(
                f.mimetype(),
                Arc::new(tiled_files::FileOpener::new(f.clone(), roots.clone())),
            );
        }
    }
    if args.demo {
        let demo = tiled_demo::demo_tree();
        catalog.register_opener(
            tiled_catalog::load::IN_MEMORY_MIMETYPE,
            Arc::new(tiled_catalog::load::InMemoryOpener { tree: demo.clone() }),
        );
        // Load once: a catalog file that holds the demo already is reused.
        let already = catalog
            .node_id(&["scalars".to_string()])
            .map_err(|e| e.to_string())?
            .is_some();
        if !already {
            let n =
                tiled_catalog::load::load_tree(&catalog, &[], &demo).map_err(|e| e.to_string())?;
            catalog
                .update_metadata(&[], &demo.metadata, Some(&demo.specs), None)
                .map_err(|e| e.to_string())?;
            tracing::info!("loaded {n} demo nodes into the catalog");
        }
    }
    let catalog = Arc::new(catalog);
    register_pool_gauges(&catalog);
    let root =
        tiled_catalog::CatalogContainer::root_node(catalog.clone()).map_err(|e| e.to_string())?;
    Ok((
        root,
        Arc::new(
            tiled_catalog::writer::CatalogWriter::new(catalog, writable)
                .with_readable_roots(readable),
        ),
    ))
}

/// A pool gauge: name, help, `state` label (empty: none), and how to read
/// it from `(idle, open, max)`.
type PoolGauge = (
    &'static str,
    &'static str,
    &'static str,
    fn((usize, usize, usize)) -> f64,
);

/// Expose the catalog's connection pool in `/api/v1/metrics`
/// (`tiled_catalog_pool_connections{state="idle"|"in_use"}` and the
/// pool's size). With several catalogs, the first registers.
fn register_pool_gauges(catalog: &Arc<tiled_catalog::Catalog>) {
    let metrics = tiled_server::metrics::Metrics::global();
    let gauges: [PoolGauge; 3] = [
        (
            "tiled_catalog_pool_connections",
            "Catalog database connections by state",
            "idle",
            |(idle, _, _)| idle as f64,
        ),
        (
            "tiled_catalog_pool_connections",
            "Catalog database connections by state",
            "in_use",
            |(idle, open, _)| open.saturating_sub(idle) as f64,
        ),
        (
            "tiled_catalog_pool_max_connections",
            "Most catalog database connections the pool opens",
            "",
            |(_, _, max)| max as f64,
        ),
    ];
    for (name, help, state, read) in gauges {
        let weak = Arc::downgrade(catalog);
        let labels: Vec<(&str, &str)> = if state.is_empty() {
            Vec::new()
        } else {
            vec![("state", state)]
        };
        let registered = metrics.register_gauge(name, help, &labels, move || {
            weak.upgrade().map_or(0.0, |c| read(c.pool_stats()))
        });
        if let Err(e) = registered {
            tracing::debug!("pool gauge {name}: {e}");
        }
    }
}

/// `tiled register URI PATH`: walk PATH into the catalog at URI (and keep
/// watching with --watch).
fn register(args: &RegisterArgs) -> Result<(), String> {
    let dir = args
        .path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", args.path.display()))?;
    let remote = args.uri.starts_with("http://") || args.uri.starts_with("https://");
    let sink: Arc<dyn tiled_files::walk::NodeSink> = if remote {
        Arc::new(remote::HttpSink::new(
            &args.uri,
            args.api_key.clone(),
            tokio::runtime::Handle::current(),
        ))
    } else {
        Arc::new(
            tiled_catalog::Catalog::open(&catalog_uri(&args.uri)?, true)
                .map_err(|e| e.to_string())?,
        )
    };
    let prefix: Vec<String> = args
        .prefix
        .split('/')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    for depth in 0..prefix.len() {
        let node = tiled_catalog::NewNode {
            key: prefix[depth].clone(),
            structure_family: tiled_model::StructureFamily::Container,
            structure: None,
            metadata: Default::default(),
            specs: vec![],
            access_blob: serde_json::json!({}),
            data_sources: vec![],
        };
        match sink.create_node(&prefix[..depth], &node) {
            Ok(()) | Err(tiled_catalog::CatalogError::Conflict(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let formats = tiled_files::formats();
    let walker = tiled_files::walk::Walker::new(sink, &formats, &dir, args.walk.options()?)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let r = walker.register(&prefix).map_err(|e| e.to_string())?;
    eprintln!(
        "registered {} nodes from {} ({} skipped, {} unreadable)",
        r.nodes,
        dir.display(),
        r.skipped,
        r.errors
    );
    // --watch: resync until the process is stopped.
    if !args.walk.watch {
        return Ok(());
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        match walker.sync(&prefix) {
            Ok(r) if r.nodes + r.removed > 0 => eprintln!(
                "watch: {} nodes registered, {} removed ({} unreadable)",
                r.nodes, r.removed, r.errors
            ),
            Ok(_) => {}
            Err(e) => eprintln!("watch: {e}"),
        }
    }
}

/// Open the catalog for `serve directory`, register the file openers, and
/// start the walk on a background thread; returns the root at once.
fn serve_directory(args: &DirectoryArgs) -> Result<tiled_adapters::Node, String> {
    let dir = args
        .path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", args.path.display()))?;
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let options = args.walk.options()?;
    let mut catalog = match &args.catalog {
        Some(uri) => tiled_catalog::Catalog::open(&catalog_uri(uri)?, true),
        None => tiled_catalog::Catalog::temporary(),
    }
    .map_err(|e| e.to_string())?;
    let formats = tiled_files::formats();
    let roots = if args.walk.follow_external_links {
        vec![std::path::PathBuf::from("/")]
    } else {
        vec![dir.clone()]
    };
    for f in &formats {
        catalog.register_opener(
            f.mimetype(),
            Arc::new(tiled_files::FileOpener::new(f.clone(), roots.clone())),
        );
    }
    let catalog = Arc::new(catalog);
    let walker = tiled_files::walk::Walker::new(catalog.clone(), &formats, &dir, options)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let watch = args.walk.watch;
    std::thread::Builder::new()
        .name("walk".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            match walker.register(&[]) {
                Ok(r) => tracing::info!(
                    "registered {} nodes from {} in {:.1} s ({} skipped, {} unreadable)",
                    r.nodes,
                    walker.root().display(),
                    started.elapsed().as_secs_f64(),
                    r.skipped,
                    r.errors
                ),
                Err(e) => tracing::error!("registering {} failed: {e}", walker.root().display()),
            }
            // --watch: resync until the process is stopped.
            if !watch {
                return;
            }
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                match walker.sync(&[]) {
                    Ok(r) if r.nodes + r.removed > 0 => tracing::info!(
                        "watch: {} nodes registered, {} removed ({} unreadable)",
                        r.nodes,
                        r.removed,
                        r.errors
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::error!("watch: {e}"),
                }
            }
        })
        .map_err(|e| e.to_string())?;
    tiled_catalog::CatalogContainer::root_node(catalog).map_err(|e| e.to_string())
}

/// The serve options of a tree built from a config file (only the tree
/// is used; the service options come from the file).
fn no_serve_args() -> ServeArgs {
    ServeArgs {
        host: String::new(),
        port: 0,
        public: false,
        private: false,
        api_key: None,
        response_bytesize_limit: DEFAULT_RESPONSE_BYTESIZE_LIMIT,
        data_memory_budget: DEFAULT_DATA_MEMORY_BUDGET,
        allow_origins: Vec::new(),
    }
}

/// One configured tree: its root and writer.
fn build_tree(
    t: &config::TreeConfig,
) -> Result<
    (
        tiled_adapters::Node,
        Option<Arc<dyn tiled_adapters::TreeWriter>>,
    ),
    String,
> {
    match &t.kind {
        config::TreeKind::Catalog {
            uri,
            init,
            writable_storage,
            readable_storage,
            top_level_access_tags,
        } => {
            let args = CatalogArgs {
                uri: uri.clone(),
                temp: uri.is_none(),
                init: *init,
                demo: false,
                readable_storage: readable_storage.clone(),
                writable_storage: writable_storage.clone(),
                serve: no_serve_args(),
            };
            let (mut root, writer) = open_catalog(&args)?;
            // The root's tags decide who may use it (create at the top,
            // above all) under an access policy.
            root.access_tags = top_level_access_tags.clone();
            root.access_tags.sort();
            root.access_tags.dedup();
            Ok((root, Some(writer)))
        }
        config::TreeKind::Demo => Ok((tiled_demo::demo_tree(), None)),
        config::TreeKind::Directory { path, watch } => {
            let args = DirectoryArgs {
                path: path.clone(),
                catalog: None,
                walk: WalkArgs {
                    keep_ext: false,
                    ext: Vec::new(),
                    follow_external_links: false,
                    watch: *watch,
                },
                serve: no_serve_args(),
            };
            Ok((serve_directory(&args)?, None))
        }
    }
}

/// Put `node` at `path` under `children` (intermediate containers are
/// made as needed).
fn mount(children: &mut Vec<(String, MountNode)>, path: &[String], node: tiled_adapters::Node) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let i = match children.iter().position(|(k, _)| k == first) {
        Some(i) => i,
        None => {
            children.push((first.clone(), MountNode::Dir(Vec::new())));
            children.len() - 1
        }
    };
    if rest.is_empty() {
        children[i].1 = MountNode::Leaf(node);
    } else if let MountNode::Dir(sub) = &mut children[i].1 {
        mount(sub, rest, node);
    }
}

enum MountNode {
    Leaf(tiled_adapters::Node),
    Dir(Vec<(String, MountNode)>),
}

fn mount_tree(children: Vec<(String, MountNode)>) -> tiled_adapters::Node {
    let nodes = children.into_iter().map(|(k, n)| {
        let node = match n {
            MountNode::Leaf(node) => node,
            MountNode::Dir(sub) => mount_tree(sub),
        };
        (k, node)
    });
    tiled_adapters::Node::new(tiled_adapters::NodeData::Container(Arc::new(
        tiled_adapters::MemoryContainer::new(nodes),
    )))
}

/// `tiled serve config FILE`.
async fn serve_config(args: ConfigArgs) -> Result<(), String> {
    let path = args.path.clone();
    let cfg = config::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let trees = cfg.trees.clone();
    let (root, writer) = tokio::task::spawn_blocking(move || {
        let mut built = Vec::new();
        for t in &trees {
            let (node, writer) =
                build_tree(t).map_err(|e| format!("tree /{}: {e}", t.path.join("/")))?;
            built.push((t.path.clone(), node, writer));
        }
        if let [(p, _, _)] = built.as_slice()
            && p.is_empty()
        {
            let (_, node, writer) = built.remove(0);
            return Ok::<_, String>((node, writer));
        }
        let mut children = Vec::new();
        let mut writers = Vec::new();
        for (p, node, writer) in built {
            if let Some(w) = writer {
                writers.push((p.clone(), w));
            }
            mount(&mut children, &p, node);
        }
        let writer: Option<Arc<dyn tiled_adapters::TreeWriter>> = (!writers.is_empty())
            .then(|| Arc::new(tiled_adapters::MountedWriters::new(writers)) as _);
        Ok((mount_tree(children), writer))
    })
    .await
    .map_err(|e| e.to_string())??;
    let public = args.public.or(cfg.allow_anonymous_access).unwrap_or(false);
    let serve_args = ServeArgs {
        host: args
            .host
            .or(cfg.host)
            .unwrap_or_else(|| "127.0.0.1".to_string()),
        port: args.port.or(cfg.port).unwrap_or(8000),
        public,
        private: !public,
        api_key: args.api_key.or(cfg.single_user_api_key),
        response_bytesize_limit: args
            .response_bytesize_limit
            .or(cfg.response_bytesize_limit)
            .unwrap_or(DEFAULT_RESPONSE_BYTESIZE_LIMIT),
        data_memory_budget: DEFAULT_DATA_MEMORY_BUDGET,
        allow_origins: cfg.allow_origins.clone(),
    };
    // Tag definitions kept in a catalog live in the first catalog tree
    // that has a URI.
    let tags_catalog = cfg.trees.iter().find_map(|t| match &t.kind {
        config::TreeKind::Catalog { uri: Some(uri), .. } => Some(uri.clone()),
        _ => None,
    });
    let multi_user = match cfg.multi_user.clone() {
        Some(mu) => Some(
            tokio::task::spawn_blocking(move || build_multi_user(mu, tags_catalog))
                .await
                .map_err(|e| e.to_string())??,
        ),
        None => None,
    };
    if let Some(mu) = &multi_user {
        tiled_server::oidc::discover_in_background(mu);
    }
    serve(serve_args, root, writer, true, false, multi_user).await
}

/// The multi-user authentication a config file describes: providers, the
/// authentication database, token lifetimes and signing keys.
fn build_multi_user(
    cfg: config::MultiUserConfig,
    tags_catalog: Option<String>,
) -> Result<Arc<tiled_server::multi_user::MultiUser>, String> {
    use tiled_server::multi_user::{MultiUser, Provider};
    let mut providers = Vec::new();
    // One HTTP client for every OpenID Connect provider, made at the first.
    let mut oidc_http: Option<Arc<dyn tiled_auth::oidc::OidcHttp>> = None;
    for p in &cfg.providers {
        let authenticator: Arc<dyn tiled_auth::PasswordAuthenticator> = match &p.kind {
            config::ProviderKind::Oidc(oidc) => {
                let http = match &oidc_http {
                    Some(h) => h.clone(),
                    None => {
                        let h: Arc<dyn tiled_auth::oidc::OidcHttp> =
                            Arc::new(tiled_server::oidc::HttpTransport::new()?);
                        oidc_http = Some(h.clone());
                        h
                    }
                };
                let provider = tiled_auth::oidc::OidcProvider::new(oidc.clone(), http);
                providers.push(Provider::oidc(p.name.clone(), Arc::new(provider)));
                continue;
            }
            config::ProviderKind::Dictionary(args) => Arc::new(
                tiled_auth::DictionaryAuthenticator::from_args(args)
                    .map_err(|e| format!("provider {}: {e}", p.name))?,
            ),
            config::ProviderKind::UsersFile(path) => Arc::new(
                tiled_auth::UsersFileAuthenticator::new(path.clone())
                    .map_err(|e| format!("provider {}: {e}", p.name))?,
            ),
            config::ProviderKind::Pam { service } => Arc::new(
                tiled_auth::PamAuthenticator::new(service)
                    .map_err(|e| format!("provider {}: {e}", p.name))?,
            ),
        };
        providers.push(Provider::password(p.name.clone(), authenticator));
    }
    let store = match &cfg.database_uri {
        Some(uri) => tiled_auth::AuthStore::open(&catalog_uri(uri)?, cfg.database_init)
            .map_err(|e| format!("authentication database: {e}"))?,
        None => {
            tracing::warn!(
                "no `database` in the config: principals, sessions and API keys live in a \
                 temporary database and are lost at exit"
            );
            tiled_auth::AuthStore::temporary()
                .map_err(|e| format!("authentication database: {e}"))?
        }
    };
    let secret_keys = if cfg.secret_keys.is_empty() {
        tracing::warn!(
            "no authentication.secret_keys: a random key signs tokens, so sessions end when \
             the server stops and replicas cannot share them"
        );
        vec![tiled_auth::TokenIssuer::random_key()]
    } else {
        cfg.secret_keys.clone()
    };
    let mut tokens = tiled_auth::TokenIssuer::new(secret_keys)
        .map_err(|e| format!("authentication.secret_keys: {e}"))?;
    let secs = std::time::Duration::from_secs_f64;
    if let Some(s) = cfg.access_token_max_age {
        tokens.access_max_age = secs(s);
    }
    if let Some(s) = cfg.refresh_token_max_age {
        tokens.refresh_max_age = secs(s);
    }
    tokens.session_max_age = cfg.session_max_age.map(secs);
    let store = Arc::new(store);
    Ok(Arc::new(MultiUser {
        device: tiled_auth::DeviceFlow::in_store(store.clone(), tiled_auth::DEVICE_CODE_MAX_AGE),
        store,
        tokens,
        providers,
        admins: cfg.admins.clone(),
        limiter: tiled_auth::LoginLimiter::default(),
        policy: cfg
            .access
            .clone()
            .map(|a| access_policy(a, tags_catalog.as_deref()))
            .transpose()?,
    }))
}

/// How long tag definitions read from a file or the catalog are reused
/// before they are read again: edits apply within this time.
const TAG_DEFINITIONS_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Read and compile a tag file (upstream's format).
///
/// # Errors
/// An unreadable file, bad YAML, or a mistake in the definitions, each
/// prefixed with the file's path.
fn compile_tag_file(
    path: &std::path::Path,
    scopes: &std::collections::BTreeSet<String>,
) -> Result<tiled_server::access::TagTable, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(&e))?;
    let value: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| at(&e))?;
    tiled_server::access::compile_tag_definitions(&value, scopes).map_err(|e| at(&e))
}

/// Tag definitions as the catalog stores them → the policy's table
/// (scopes outside `scopes` are dropped).
fn tag_table_from_rows(
    rows: &tiled_catalog::AccessTagRows,
    scopes: &std::collections::BTreeSet<String>,
) -> tiled_server::access::TagTable {
    let mut table = tiled_server::access::TagTable::default();
    for (tag, public) in &rows.tags {
        table.grants.entry(tag.clone()).or_default();
        if *public {
            table.public.insert(tag.clone());
        }
    }
    for (tag, who, scope) in rows.grants.iter().filter(|g| scopes.contains(&g.2)) {
        table
            .grants
            .entry(tag.clone())
            .or_default()
            .entry(who.clone())
            .or_default()
            .insert(scope.clone());
    }
    for (tag, who) in &rows.owners {
        table
            .owners
            .entry(tag.clone())
            .or_default()
            .insert(who.clone());
    }
    table
}

/// The policy's table → rows for the catalog.
fn tag_rows_from_table(table: &tiled_server::access::TagTable) -> tiled_catalog::AccessTagRows {
    let mut rows = tiled_catalog::AccessTagRows::default();
    let names: std::collections::BTreeSet<&String> = table
        .grants
        .keys()
        .chain(table.owners.keys())
        .chain(table.public.iter())
        .collect();
    for name in names {
        rows.tags.push((name.clone(), table.public.contains(name)));
    }
    for (tag, holders) in &table.grants {
        for (who, scopes) in holders {
            for scope in scopes {
                rows.grants.push((tag.clone(), who.clone(), scope.clone()));
            }
        }
    }
    for (tag, owners) in &table.owners {
        for who in owners {
            rows.owners.push((tag.clone(), who.clone()));
        }
    }
    rows
}

/// The tag-based access policy a config describes.
fn access_policy(
    a: config::AccessConfig,
    tags_catalog: Option<&str>,
) -> Result<tiled_server::access::TagPolicy, String> {
    use tiled_server::access::{TagPolicy, TagSource};
    let scopes = a.scopes;
    let source = match a.definitions {
        config::TagDefinitions::Inline(table) => TagSource::Fixed(Arc::new(table)),
        config::TagDefinitions::File(path) => {
            let load_scopes = scopes.clone();
            let load = move || compile_tag_file(&path, &load_scopes);
            // A file that does not compile at start-up is a config error.
            let first = load().map_err(|e| format!("access_control.args.tag_config: {e}"))?;
            TagSource::live(first, load, TAG_DEFINITIONS_TTL)
        }
        config::TagDefinitions::Catalog => {
            let key = "access_control.args.access_tags_parser";
            let uri = tags_catalog.ok_or_else(|| {
                format!(
                    "{key}: the tags live in a catalog, and no tree is a catalog with a uri \
                     (give one, or the definitions in args.tag_config)"
                )
            })?;
            let catalog = tiled_catalog::Catalog::open(&catalog_uri(uri)?, false)
                .map_err(|e| format!("{key}: {e}"))?;
            let load_scopes = scopes.clone();
            let load = move || -> Result<tiled_server::access::TagTable, String> {
                let rows = catalog.access_tags().map_err(|e| e.to_string())?;
                Ok(tag_table_from_rows(&rows, &load_scopes))
            };
            let table = load().map_err(|e| format!("{key}: {e}"))?;
            if table.grants.is_empty() && table.owners.is_empty() && table.public.is_empty() {
                tracing::warn!(
                    "{key}: the catalog holds no access tag definitions yet; fill them with \
                     `tiled admin compile-tags TAGS.yml --catalog {uri}`"
                );
            }
            TagSource::live(table, load, TAG_DEFINITIONS_TTL)
        }
    };
    Ok(TagPolicy {
        provider: a.provider,
        source,
        scopes,
    })
}

async fn serve(
    args: ServeArgs,
    root: tiled_adapters::Node,
    writer: Option<Arc<dyn tiled_adapters::TreeWriter>>,
    tree_blocks: bool,
    public_by_default: bool,
    multi_user: Option<Arc<tiled_server::multi_user::MultiUser>>,
) -> Result<(), String> {
    let api_key = match args.api_key.filter(|k| !k.is_empty()) {
        // The Python client reads keys back with `^Apikey (\w+)$`: any
        // other character makes it think it has no key.
        Some(k) if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            return Err(
                "the API key may contain only letters, digits and _ (the Python client \
                 ignores other keys)"
                    .into(),
            );
        }
        Some(k) => k,
        None => random_key(),
    };
    let allow_anonymous = args.public || (public_by_default && !args.private);
    let config = ServerConfig {
        auth: AuthConfig {
            api_key: api_key.clone(),
            allow_anonymous,
            multi_user: multi_user.clone(),
        },
        response_bytesize_limit: args.response_bytesize_limit,
        data_memory_budget: args.data_memory_budget,
        tree_blocks,
        allow_origins: args.allow_origins.clone(),
    };
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .or_else(|_| format!("[{}]:{}", args.host, args.port).parse())
        .map_err(|e| format!("invalid --host/--port: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let shown = if args.host == "0.0.0.0" {
        "127.0.0.1".to_string()
    } else {
        args.host.clone()
    };
    eprintln!();
    eprintln!("    Navigate a web browser or connect a Tiled client to:");
    eprintln!();
    eprintln!("    http://{shown}:{}?api_key={api_key}", args.port);
    eprintln!();
    if allow_anonymous {
        eprintln!("    (Public: anyone may read without the key.)");
        eprintln!();
    }
    tiled_server::serve(
        listener,
        tiled_server::router_with_writer(root, config, writer),
    )
    .await
    .map_err(|e| format!("server failed: {e}"))
}
