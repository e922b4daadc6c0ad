//! The parts of the `oxidns` binary that tests also need: the plugin list.

pub mod plugins;
