//! The `lastack` command line.
//!
//! | command | what it does |
//! |---|---|
//! | `lastack check -c FILE` | validate a config; errors name file:line:column and key |
//! | `lastack check --explain` | print the config reference |
//! | `lastack run -c FILE` | run the proxy with that config |
//!
//! Signals for `run` (DESIGN.md § Conventions 7): SIGTERM drains, SIGHUP
//! reloads, SIGINT exits fast. Until the shards exist (issue 4) SIGTERM and
//! SIGINT both detach and exit, and SIGHUP is logged and ignored.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lastack::config::{self, Config, LogFormat};
use lastack::link::xdp::Steering;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a config that does not validate.
const EXIT_BAD_CONFIG: u8 = 1;
/// Exit status for a failure at run time (BPF load, attach, ...).
const EXIT_RUNTIME: u8 = 3;

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
    },
    /// Run the proxy.
    Run {
        /// The TOML config file.
        #[arg(short, long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { explain: true, .. } => {
            print!("{}", config::REFERENCE);
            ExitCode::SUCCESS
        }
        Command::Check {
            config: Some(path), ..
        } => match config::load(&path) {
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
        Command::Run { config: path } => {
            let config = match config::load(&path) {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            init_logging(&config);
            match run(&config) {
                Ok(()) => ExitCode::SUCCESS,
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
        .with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Attaches the steering program to every interface with the listener map
/// filled, then reports its counters until SIGTERM or SIGINT.
fn run(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))?;

    let mut programs = Vec::new();
    for interface in &config.interfaces {
        let mut steering = Steering::load()?;
        for listener in &config.listeners {
            steering.add_listener(*listener.vip, listener.port)?;
        }
        let ifindex = nix::net::if_::if_nametoindex(interface.name.as_str())
            .map_err(|e| format!("interface {}: {e}", interface.name))?;
        steering.attach(ifindex, interface.xdp_mode)?;
        tracing::info!(interface = %interface.name, mode = ?interface.xdp_mode, "XDP steering attached");
        programs.push((interface.name.clone(), steering));
    }
    if programs.is_empty() {
        tracing::warn!("no [[interfaces]] configured: nothing to attach to");
    }
    tracing::warn!(
        "the AF_XDP shards and TCP engine are not built yet: listener traffic is counted \
         as no_socket and left to the kernel"
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if reload.swap(false, Ordering::Relaxed) {
            tracing::warn!("SIGHUP: reload is not implemented yet; config unchanged");
        }
    }
    for (name, steering) in &programs {
        let counters = steering.counters()?;
        tracing::info!(interface = %name, ?counters, "detaching XDP steering");
    }
    Ok(())
}
