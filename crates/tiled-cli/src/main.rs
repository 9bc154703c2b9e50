//! `tiled`: the command line of tiled-rs.
//!
//! `tiled serve demo` serves the generated demo tree; later subcommands
//! (catalog, directory, config, register, login) follow upstream's names.

use std::net::SocketAddr;

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
}

#[derive(Subcommand)]
enum Serve {
    /// Serve the generated demo tree (see docs/demo.md). Public by default,
    /// like upstream's `tiled serve demo`.
    Demo(ServeArgs),
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

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS)
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
        } => serve(args, tiled_demo::demo_tree()).await,
    }
}

async fn serve(args: ServeArgs, root: tiled_adapters::Node) -> Result<(), String> {
    let api_key = match args.api_key.filter(|k| !k.is_empty()) {
        Some(k) => k,
        None => random_key(),
    };
    let allow_anonymous = args.public || !args.private;
    let config = ServerConfig {
        auth: AuthConfig {
            api_key: api_key.clone(),
            allow_anonymous,
        },
        response_bytesize_limit: args.response_bytesize_limit,
        data_memory_budget: args.data_memory_budget,
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
    tiled_server::serve(listener, tiled_server::router(root, config))
        .await
        .map_err(|e| format!("server failed: {e}"))
}
