//! The `oxidns` binary: flags, logging, signals, and wiring of the plugin list.
//! Everything else lives in the library crates.

mod cli;
mod log_format;

use oxidns::plugins;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use oxidns_server::corefile::{ServerBlock, parse_file, parse_str};
use oxidns_server::{Config, ConfigError, Limits, Options, Server, build, logging};

use cli::Cli;

/// How long queries in flight may take to finish after SIGTERM.
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

    let config = match load_config(&cli) {
        Ok(config) => config,
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
    logging::set_debug(config.debug());

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, &cli))
}

fn version_text() -> String {
    format!(
        "oxidns-{}\n{}/{}, rustc",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The Corefile named by `-conf`, else `./Corefile`, else CoreDNS's default
/// (`whoami` and `log` for the root zone).
fn read_corefile(cli: &Cli) -> Result<Vec<ServerBlock>, ConfigError> {
    if let Some(path) = &cli.conf {
        return parse_file(path);
    }
    let default = Path::new("Corefile");
    if default.exists() {
        return parse_file(default);
    }
    let text = format!(".:{} {{\n whoami\n log\n}}\n", cli.dns_port);
    parse_str(&text, "default Corefile")
}

fn load_config(cli: &Cli) -> Result<Config, Vec<ConfigError>> {
    let blocks = read_corefile(cli).map_err(|e| vec![e])?;
    build(
        &blocks,
        plugins::PLUGINS,
        &Options {
            dns_port: cli.dns_port,
        },
    )
}

async fn serve(config: Config, cli: &Cli) -> ExitCode {
    let configured: Vec<_> = config.listeners.iter().map(|l| l.addr).collect();
    let mut banner = Vec::new();
    for block in &config.blocks {
        for key in &block.keys {
            for zone in &key.zones {
                banner.push((oxidns_server::proto::name_text(zone), key.port));
            }
        }
    }
    let server = match Server::start(config, Limits::default()).await {
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
        for (zone, port) in banner {
            // With port 0 the kernel chose one: show it.
            let port = if port == 0 {
                configured
                    .iter()
                    .position(|a| a.port() == 0)
                    .map_or(0, |i| server.local_addrs()[i].port())
            } else {
                port
            };
            println!("{zone}:{port}");
        }
        println!("{}", version_text());
    }
    wait_for_stop_signal().await;
    tracing::info!("shutting down: finishing queries in flight");
    server.shutdown(SHUTDOWN_GRACE).await;
    remove_pidfile(pidfile);
    ExitCode::SUCCESS
}

fn remove_pidfile(pidfile: Option<PathBuf>) {
    if let Some(path) = pidfile {
        let _ = std::fs::remove_file(path);
    }
}

/// Waits for SIGTERM or SIGINT. SIGUSR1 (CoreDNS's reload signal) is noted
/// and otherwise ignored until configuration reload lands.
async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = usr1.recv() => tracing::warn!("SIGUSR1: configuration reload is not available yet; still serving the current config"),
        }
    }
}
