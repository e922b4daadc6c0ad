//! The oxidns server: Corefile, plugin API and chain, zone routing, listeners.
//!
//! - [`corefile`]: the grammar (server blocks, snippets, imports, keys).
//! - [`plugin`]: what a plugin implements ([`Handler`], [`Lifecycle`]) and
//!   how it sets itself up from its directive ([`Setup`]).
//! - [`config`]: a whole configuration checked and wired into chains.
//! - [`server`]: listeners and the way of one query.

pub mod config;
pub mod corefile;
pub mod logging;
pub mod plugin;
pub mod server;
pub mod test_util;

pub use config::{Config, Options, build};
pub use corefile::{ConfigError, Directive, Token};
pub use oxidns_proto as proto;
pub use plugin::{
    Handler, HandlerFuture, Lifecycle, Next, PluginEntry, PluginError, Request, Setup, Transport,
};
pub use server::{Limits, Server};
