//! The weight file of the `weighted` policy, and its reloading.
//!
//! ```text
//! # Comment lines are ignored
//! www.example.org
//! 192.0.2.1 3
//! 192.0.2.2 1
//! ```
//!
//! A line with one field names a domain; the lines after it give an address
//! of that domain and its weight (1 to 255). Addresses not in the file weigh 1.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use oxidns_server::proto::{Name, lowercase, name_from_str};
use tokio_util::sync::CancellationToken;

/// Weights by domain name (lower-case), then by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Weights {
    domains: HashMap<Name, Vec<(IpAddr, u8)>>,
}

impl Weights {
    /// The weight of `ip` as an address of `owner`; 1 when the file has none.
    pub fn weight(&self, owner: &Name, ip: IpAddr) -> u8 {
        let ip = ip.to_canonical();
        self.domains
            .get(&lowercase(owner))
            .and_then(|list| list.iter().find(|(addr, _)| *addr == ip))
            .map_or(1, |(_, weight)| *weight)
    }

    /// Reads a weight file's text; an error names its line (from 1).
    pub fn parse(text: &str) -> Result<Weights, (u32, String)> {
        let mut domains: HashMap<Name, Vec<(IpAddr, u8)>> = HashMap::new();
        let mut current: Option<Name> = None;
        for (index, line) in text.lines().enumerate() {
            let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [domain] => {
                    if domain.parse::<IpAddr>().is_ok() {
                        return Err((
                            number,
                            format!(
                                "wrong domain name \"{domain}\" (maybe a missing weight value?)"
                            ),
                        ));
                    }
                    let name = name_from_str(domain).map_err(|e| (number, e))?;
                    let name = lowercase(&name);
                    domains.entry(name.clone()).or_default();
                    current = Some(name);
                }
                [address, weight] => {
                    let ip: IpAddr = address
                        .parse()
                        .map_err(|_| (number, format!("wrong IP address \"{address}\"")))?;
                    let weight = weight
                        .parse::<u8>()
                        .ok()
                        .filter(|w| *w > 0)
                        .ok_or_else(|| (number, format!("wrong weight value \"{weight}\"")))?;
                    let Some(domain) = &current else {
                        return Err((number, "missing domain name".to_owned()));
                    };
                    domains
                        .entry(domain.clone())
                        .or_default()
                        .push((ip.to_canonical(), weight));
                }
                _ => return Err((number, format!("could not parse weight line \"{line}\""))),
            }
        }
        Ok(Weights { domains })
    }
}

/// A weight file, its current weights, and what it held when last read.
pub struct WeightFile {
    pub path: PathBuf,
    /// How often the file is checked for changes; zero: never.
    pub reload: Duration,
    weights: ArcSwap<Weights>,
    last: Mutex<Option<Vec<u8>>>,
}

impl WeightFile {
    /// A file not read yet: every address weighs 1.
    pub fn new(path: PathBuf, reload: Duration) -> WeightFile {
        WeightFile {
            path,
            reload,
            weights: ArcSwap::from_pointee(Weights::default()),
            last: Mutex::new(None),
        }
    }

    /// The weights in use.
    pub fn weights(&self) -> Arc<Weights> {
        self.weights.load_full()
    }

    /// Takes the file's new contents: `Ok(true)` if they changed and were
    /// taken, `Ok(false)` if unchanged. Contents with an error are remembered
    /// too (so the error is reported once), and the old weights stay.
    pub fn update(&self, bytes: Vec<u8>) -> Result<bool, (u32, String)> {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.as_deref() == Some(bytes.as_slice()) {
                return Ok(false);
            }
            *last = Some(bytes.clone());
        }
        let weights = Weights::parse(&String::from_utf8_lossy(&bytes))?;
        self.weights.store(Arc::new(weights));
        Ok(true)
    }
}

/// Checks the file every `reload` until stopped; changes replace the weights whole.
pub(crate) async fn watch(file: Arc<WeightFile>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(file.reload);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let path = file.path.clone();
        let read = match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
            Ok(read) => read,
            Err(_) => continue,
        };
        let path = file.path.display();
        match read.map(|bytes| file.update(bytes)) {
            Ok(Ok(true)) => {
                tracing::info!(target: "plugin/loadbalance", "Successfully reloaded weight file {path}");
            }
            Ok(Ok(false)) => {}
            Ok(Err((line, message))) => tracing::error!(
                target: "plugin/loadbalance",
                "{path}:{line}: {message}; still using the previous weights"
            ),
            Err(e) => tracing::error!(
                target: "plugin/loadbalance",
                "Failed to open weight file {path}: {e}"
            ),
        }
    }
}
