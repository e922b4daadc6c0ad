//! What the process is serving now, for process-wide views such as `ready`.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::config::Config;

static RUNNING: ArcSwapOption<Config> = ArcSwapOption::const_empty();

pub(crate) fn set_running(config: Option<Arc<Config>>) {
    RUNNING.store(config);
}

/// The configuration being served, if a server runs.
pub fn running() -> Option<Arc<Config>> {
    RUNNING.load_full()
}

/// The plugins of the running configuration that are not ready, in config
/// order and without repeats; `None` when no server runs.
pub fn not_ready() -> Option<Vec<&'static str>> {
    let config = running()?;
    let mut names: Vec<&'static str> = Vec::new();
    for (name, lifecycle) in config.lifecycles() {
        if !lifecycle.ready() && !names.contains(name) {
            names.push(name);
        }
    }
    Some(names)
}
