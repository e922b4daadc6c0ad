//! The `oxidns` binary: flags, logging, signals, configuration reloads, and
//! wiring of the plugin list. Everything else lives in the library crates.

mod cli;
mod log_format;
mod reload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use oxidns::plugins;
use oxidns_server::corefile::{ServerBlock, parse_file_with_sources, parse_str};
use oxidns_server::{Config, ConfigError, Limits, Options, Server, build, logging};

use cli::Cli;

/// How long queries in flight may take to finish after SIGTERM, and after a
/// reload before the old plugins are shut down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = match Cli::parse(std::env::args().skip(1)) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("{message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if cli.help {
        println!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    if cli.version {
        println!("{}", version_text());
        return ExitCode::SUCCESS;
    }
    if cli.plugins {
        println!("Server types:\n  dns\n\nPlugins (in execution order):");
        for plugin in plugins::PLUGINS {
            println!("  dns.{}", plugin.name);
        }
        return ExitCode::SUCCESS;
    }
    log_format::init();

    let loaded = match load_config(&cli) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            return ExitCode::FAILURE;
        }
    };
    if cli.check {
        return ExitCode::SUCCESS;
    }
    logging::set_debug(loaded.config.debug());

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cli.workers > 0 {
        builder.worker_threads(cli.workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(loaded, &cli))
}

fn version_text() -> String {
    format!(
        "oxidns-{}\n{}/{}, rustc",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// A checked configuration and the files it was read from.
pub struct Loaded {
    pub config: Config,
    /// The Corefile and every file it imports; empty for the built-in default.
    pub sources: Vec<PathBuf>,
    /// Their SHA-512 as read, so that a change made while starting is noticed.
    pub digest: String,
}

/// The Corefile named by `-conf`, else `./Corefile`, else CoreDNS's default
/// (`whoami` and `log` for the root zone).
fn read_corefile(cli: &Cli) -> Result<(Vec<ServerBlock>, Vec<PathBuf>), ConfigError> {
    if let Some(path) = &cli.conf {
        return parse_file_with_sources(path);
    }
    let default = Path::new("Corefile");
    if default.exists() {
        return parse_file_with_sources(default);
    }
    let text = format!(".:{} {{\n whoami\n log\n}}\n", cli.dns_port);
    Ok((parse_str(&text, "default Corefile")?, Vec::new()))
}

fn load_config(cli: &Cli) -> Result<Loaded, Vec<ConfigError>> {
    // The digest is taken first: a change after it is seen by the next check.
    let (_, sources) = read_corefile(cli).map_err(|e| vec![e])?;
    let digest = reload::digest(&sources);
    let (blocks, sources) = read_corefile(cli).map_err(|e| vec![e])?;
    let options = Options {
        dns_port: cli.dns_port,
    };
    let config = build(&blocks, plugins::PLUGINS, &options)?;
    Ok(Loaded {
        config,
        sources,
        digest,
    })
}

async fn serve(loaded: Loaded, cli: &Cli) -> ExitCode {
    let banner = banner_lines(&loaded.config);
    let Loaded {
        config,
        sources,
        digest,
    } = loaded;
    let mut signals = match reload::Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let limits = Limits {
        // One UDP socket, read by a thread of its own, per worker.
        udp_sockets: tokio::runtime::Handle::current().metrics().num_workers(),
        pin_udp_threads: cli.pin,
        ..Limits::default()
    };
    let mut server = match Server::start(config, limits).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let pidfile = cli.pidfile.clone();
    if let Some(path) = &pidfile
        && let Err(e) = std::fs::write(path, format!("{}\n", std::process::id()))
    {
        eprintln!("cannot write pidfile {}: {e}", path.display());
        server.shutdown(SHUTDOWN_GRACE).await;
        return ExitCode::FAILURE;
    }
    if !cli.quiet {
        let bound = server.local_addrs();
        for (zone, port, listener) in banner {
            // With port 0 the kernel chose one: show it.
            let port = if port == 0 {
                bound[listener].port()
            } else {
                port
            };
            println!("{zone}:{port}");
        }
        println!("{}", version_text());
    }
    let mut watcher = reload::Watcher::new(sources, digest);
    watcher
        .run(&mut server, &mut signals, || load_config(cli))
        .await;
    tracing::info!("shutting down: finishing queries in flight");
    server.shutdown(SHUTDOWN_GRACE).await;
    if let Some(path) = pidfile {
        let _ = std::fs::remove_file(path);
    }
    ExitCode::SUCCESS
}

/// `zone:port` for every zone of every key, with the index of its listener.
fn banner_lines(config: &Config) -> Vec<(String, u16, usize)> {
    let mut lines = Vec::new();
    for block in &config.blocks {
        for key in &block.keys {
            let listener = config
                .listeners
                .iter()
                .position(|l| l.addr.port() == key.port)
                .unwrap_or(0);
            for zone in &key.zones {
                lines.push((oxidns_server::proto::name_text(zone), key.port, listener));
            }
        }
    }
    lines
}
