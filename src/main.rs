//! The `lastack` command line.
//!
//! | command | what it does |
//! |---|---|
//! | `lastack check -c FILE` | validate a config; errors name file:line:column and key |
//! | `lastack check --explain` | print the config reference |
//! | `lastack check --host -c FILE [--fixes]` | check this host against a config; print what is missing and the commands that fix it |
//! | `lastack run -c FILE` | run the proxy with that config |
//! | `lastack churn ADDR...` | connection-churn load generator (any TCP service) |
//! | `lastack backend --listen ADDR...` | built-in backend server (echo or fixed response) |
//! | `lastack stats [-a ADDR \| -c FILE]` | counters of a running instance as a table |
//! | `lastack reload -c FILE` | tell the instance FILE configures to reload it |
//! | `lastack ctl ...` | control a running instance: reload, drain/undrain a backend, readiness |
//!
//! Signals for `run` (DESIGN.md § Conventions 7; see `lastack::runtime`):
//! SIGHUP reloads, SIGTERM drains gracefully, SIGINT stops at once.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lastack::config::{self, Config, LogFormat};
use lastack::runtime::{Ending, Runtime, Secrets};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a config that does not validate.
const EXIT_BAD_CONFIG: u8 = 1;
/// Exit status for a failure at run time (BPF load, attach, ...).
const EXIT_RUNTIME: u8 = 3;
/// Exit status for a host that lacks what the config needs (`check --host`).
const EXIT_HOST_NOT_READY: u8 = 2;
/// Exit status when a shard died and could not be restarted.
const EXIT_SHARD_LOST: u8 = 4;

#[derive(Parser)]
#[command(
    name = "lastack",
    version,
    about = "An L4 reverse proxy with its own TCP stack on XDP/AF_XDP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and exit (0 if valid, 1 if not).
    Check {
        /// The TOML config file.
        #[arg(short, long, required_unless_present = "explain")]
        config: Option<PathBuf>,
        /// Print the config reference (every table and key) instead.
        #[arg(long)]
        explain: bool,
        /// Also check this host (this network namespace) against the
        /// config: interfaces, queues, MTU, offloads, IRQ affinity, VIPs,
        /// source addresses, sysctls, the cluster key file; each problem
        /// with the command that fixes it (exit 2 if any).
        #[arg(long, requires = "config")]
        host: bool,
        /// With --host: print only the fixing commands, as a shell script
        /// (what deploy/setup-host.sh runs).
        #[arg(long, requires = "host")]
        fixes: bool,
    },
    /// Run the proxy.
    Run {
        /// The TOML config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Load generator: open, use and close connections as fast as the
    /// target allows (or at a fixed rate), and report rate, latency
    /// percentiles and errors. Works against any TCP service.
    Churn(ChurnArgs),
    /// A backend server for demos and benchmarks: echo, or a fixed
    /// response after a fixed request.
    Backend(BackendArgs),
    /// The demo: lastack in front of three backends in network namespaces,
    /// driven by churn under both close policies (root; about a minute).
    Demo {
        /// The demo config.
        #[arg(short, long, default_value = "config/demo.toml")]
        config: PathBuf,
        /// Seconds of load per measurement.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Tell a running instance to reload its config file (the one FILE
    /// names the admin endpoint of; it re-reads the file it was started
    /// with). Prints what it says; exit 1 if it refused.
    Reload {
        /// The instance's config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Control a running instance through its admin endpoint.
    Ctl {
        /// Admin address of the instance.
        #[arg(short, long, default_value = "127.0.0.1:9190")]
        admin: std::net::SocketAddr,
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Print the counters of a running instance as a table (from its
    /// admin endpoint).
    Stats {
        /// Admin address of the instance.
        #[arg(short, long, conflicts_with = "config")]
        admin: Option<std::net::SocketAddr>,
        /// Or the instance's config file (its `[admin] listen`).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Print the Prometheus text as served.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
        /// Print the JSON view as served.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CtlAction {
    /// Re-read and apply the config file.
    Reload,
    /// No new connections to a backend (existing ones finish).
    Drain {
        /// Pool name.
        pool: String,
        /// Backend address (ADDRESS:PORT).
        backend: std::net::SocketAddr,
    },
    /// New connections to a drained backend again.
    Undrain {
        pool: String,
        backend: std::net::SocketAddr,
    },
    /// Whether it takes new connections (exit 0 if ready).
    Ready,
}

#[derive(clap::Args)]
struct ChurnArgs {
    /// Target address(es), used in turn.
    #[arg(required = true)]
    targets: Vec<std::net::SocketAddr>,
    /// Flows in progress at once.
    #[arg(short, long, default_value_t = 64)]
    concurrency: usize,
    /// Load threads (default: one per CPU).
    #[arg(short, long)]
    threads: Option<usize>,
    /// How long to run (default 10s unless --connections is given).
    #[arg(short, long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many connections.
    #[arg(short = 'n', long)]
    connections: Option<u64>,
    #[command(flatten)]
    exchange: ExchangeArgs,
    /// Requests per connection: 1 is churn (a new connection for each);
    /// more keep the connection alive between them (client-first); 0
    /// keeps each connection until the run ends.
    #[arg(short = 'k', long, default_value_t = 1)]
    requests_per_connection: u32,
    /// Open loop: start this many requests per second (a new connection
    /// with its first), measuring latency from when each was due.
    #[arg(long)]
    rate: Option<f64>,
    /// Source address(es) to connect from, used in turn.
    #[arg(long = "source")]
    sources: Vec<std::net::IpAddr>,
    /// A connection not done by then counts as a timeout.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// One exchange, as churn and backend both see it.
#[derive(clap::Args)]
struct ExchangeArgs {
    /// Request bytes: churn sends them on each connection; backend reads
    /// them before answering.
    #[arg(long, default_value_t = 64)]
    request: usize,
    /// Response bytes: backend answers with them; churn expects them.
    #[arg(long, default_value_t = 64)]
    response: usize,
    /// Who closes first. churn: the client once it has the whole response
    /// (client-first) or the server, read until EOF (server-first).
    /// backend: after the client's FIN (client-first) or right after the
    /// response (server-first).
    #[arg(long, value_enum, default_value = "client-first")]
    close: lastack_tools::churn::CloseOrder,
}

#[derive(clap::Args)]
struct BackendArgs {
    /// Address(es) to listen on.
    #[arg(short, long, required = true)]
    listen: Vec<std::net::SocketAddr>,
    #[arg(long, value_enum, default_value = "respond")]
    mode: lastack_tools::churn::server::Mode,
    #[command(flatten)]
    exchange: ExchangeArgs,
    /// Server threads.
    #[arg(short, long, default_value_t = 1)]
    threads: usize,
}

/// `lastack check --host`: the report, or with `fixes` the script.
fn check_host(config: &Config, fixes: bool) -> ExitCode {
    let findings = lastack::preflight::check_host(config);
    if fixes {
        print!("{}", lastack::preflight::fix_script(&findings));
        return ExitCode::SUCCESS;
    }
    for finding in &findings {
        println!("{finding}");
    }
    let missing = findings.iter().filter(|f| f.is_missing()).count();
    if missing == 0 {
        println!("host: ready for this config");
        ExitCode::SUCCESS
    } else {
        println!("host: {missing} thing(s) missing; `lastack check --host --fixes -c FILE` prints the commands (deploy/setup-host.sh runs them)");
        ExitCode::from(EXIT_HOST_NOT_READY)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { explain: true, .. } => {
            print!("{}", config::REFERENCE);
            ExitCode::SUCCESS
        }
        Command::Check {
            config: Some(path),
            host,
            fixes,
            ..
        } => match config::load(&path) {
            Ok(config) if host => check_host(&config, fixes),
            Ok(config) => {
                println!("{}: OK ({})", path.display(), summary(&config));
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Check { config: None, .. } => unreachable!("clap requires --config"),
        Command::Churn(args) => churn(args),
        Command::Demo { config, seconds } => match lastack_tools::demo::run(&config, seconds) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        },
        Command::Stats {
            admin,
            config,
            raw,
            json,
        } => stats(admin, config, raw, json),
        Command::Reload { config: path } => match config::load(&path) {
            Ok(c) => ctl(*c.admin.listen, CtlAction::Reload),
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Ctl { admin, action } => ctl(admin, action),
        Command::Backend(args) => backend(args),
        Command::Run { config: path } => {
            let config = match config::load(&path) {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            init_logging(&config);
            match run(&config, path) {
                Ok(Ending::Clean) => ExitCode::SUCCESS,
                Ok(Ending::ShardLost) => ExitCode::from(EXIT_SHARD_LOST),
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}

fn summary(config: &Config) -> String {
    let backends: usize = config.pools.iter().map(|p| p.backends.len()).sum();
    format!(
        "{} interface(s), {} listener(s), {} pool(s), {} backend(s)",
        config.interfaces.len(),
        config.listeners.len(),
        config.pools.len(),
        backends
    )
}

/// Logs to stderr; `RUST_LOG` overrides `[logging] level`.
fn init_logging(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.logging.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.logging.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs one shard per configured rx queue of every interface, with the
/// steering program attached, until SIGTERM (drain) or SIGINT (stop);
/// SIGHUP reloads `path`.
fn run(config: &Config, path: PathBuf) -> Result<Ending, Box<dyn std::error::Error + Send + Sync>> {
    let runtime = Runtime::start(config, Secrets::Random)?;
    runtime.serve(Some(path))
}

/// A control request to a running instance; prints its answer.
fn ctl(admin: std::net::SocketAddr, action: CtlAction) -> ExitCode {
    use lastack_tools::metrics;
    let result = match &action {
        CtlAction::Reload => metrics::post(admin, "/reload"),
        CtlAction::Drain { pool, backend } => metrics::post(
            admin,
            &format!("/backends/drain?pool={pool}&backend={backend}"),
        ),
        CtlAction::Undrain { pool, backend } => metrics::post(
            admin,
            &format!("/backends/undrain?pool={pool}&backend={backend}"),
        ),
        CtlAction::Ready => metrics::get(admin, "/ready"),
    };
    match result {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{admin}: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn churn(args: ChurnArgs) -> ExitCode {
    use std::io::IsTerminal;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let duration = match (args.duration, args.connections) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d,
    };
    let config = lastack_tools::churn::ChurnConfig {
        targets: args.targets,
        concurrency: args.concurrency.max(1),
        threads,
        duration,
        connections: args.connections,
        request: args.exchange.request,
        response: args.exchange.response,
        close: args.exchange.close,
        requests_per_connection: args.requests_per_connection,
        rate: args.rate,
        sources: args.sources,
        timeout: args.timeout,
        cancel: None,
    };
    let live = std::io::stderr().is_terminal() && !args.json;
    let mut previous = 0;
    let report = lastack_tools::churn::run(&config, |elapsed, done, errors| {
        if live {
            eprint!(
                "\r{:>5.1}s  {:>9} transactions  {:>8}/s  {} errors   ",
                elapsed.as_secs_f64(),
                done,
                done - previous,
                errors
            );
            previous = done;
        }
    });
    if live {
        eprintln!();
    }
    match report {
        Ok(report) => {
            use std::io::Write;
            let text = if args.json {
                serde_json::to_string_pretty(&report).expect("a report serializes") + "\n"
            } else {
                report.text()
            };
            // A closed stdout (e.g. `| head`) is not worth a panic.
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("churn: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn backend(args: BackendArgs) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("backend: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    }
    let config = lastack_tools::churn::server::ServerConfig {
        listen: args.listen,
        mode: args.mode,
        request: args.exchange.request,
        response: args.exchange.response,
        close: args.exchange.close,
        threads: args.threads,
    };
    let stats = lastack_tools::churn::server::ServerStats::default();
    match lastack_tools::churn::server::serve(&config, &stop, &stats) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backend: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn stats(
    admin: Option<std::net::SocketAddr>,
    config: Option<PathBuf>,
    raw: bool,
    json: bool,
) -> ExitCode {
    use lastack_tools::metrics;
    let address = match (admin, config) {
        (Some(a), _) => a,
        (None, Some(path)) => match config::load(&path) {
            Ok(c) => *c.admin.listen,
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        },
        (None, None) => "127.0.0.1:9190".parse().expect("a literal address"),
    };
    let shown = match (raw, json) {
        (true, _) => metrics::get(address, "/metrics"),
        (_, true) => metrics::get(address, "/metrics.json"),
        _ => metrics::fetch(address).map(|exposition| exposition.table()),
    };
    match shown {
        Ok(text) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stats: admin endpoint {address}: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
