//! The oxidns server: Corefile, plugin API and chain, zone routing, listeners.
//!
//! - [`corefile`]: the grammar (server blocks, snippets, imports, keys).
//! - [`plugin`]: what a plugin implements ([`Handler`], [`Lifecycle`]) and
//!   how it sets itself up from its directive ([`Setup`]).
//! - [`config`]: a whole configuration checked and wired into chains.
//! - [`server`]: listeners and the way of one query.

pub mod config;
pub mod corefile;
pub mod duration;
pub mod fallthrough;
mod future_slot;
pub mod http;
pub mod logging;
pub mod plugin;
pub mod rebinding;
pub mod server;
pub mod state;
pub mod test_util;
mod udp;

pub use config::{Config, Options, build};
pub use corefile::{ConfigError, Directive, Token};
pub use oxidns_proto as proto;
pub use plugin::{
    Handler, HandlerFuture, HandlerResult, HookFuture, Lifecycle, Next, OwnedNext, PluginEntry,
    PluginError, Request, Setup, Transport,
};
pub use server::{Limits, ReloadError, Server};

/// The machine's host name ("localhost" if it cannot be read), for `chaos` and `nsid`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if len > 0 {
            return String::from_utf8_lossy(&buf[..len]).into_owned();
        }
    }
    "localhost".to_owned()
}
