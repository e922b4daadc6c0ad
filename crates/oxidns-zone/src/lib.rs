//! Zone data for oxidns.
//!
//! - [`zonefile`]: reading zone files in the master-file format of RFC 1035 §5
//!   (with the RFC 3597 form for unknown types and BIND's `$GENERATE`) into
//!   records that remember the file and line they came from.
//! - [`zone`]: a zone as an immutable, checked snapshot in canonical order.
//! - `lookup`: answering a question from a zone (RFC 1034 §4.3.2, RFC 4592,
//!   RFC 6672, RFC 4035 §3.1, RFC 5155 §7.2).
//! - [`served`]: the zones a plugin serves from files, reloaded and swapped whole.
//! - [`journal`]: the differences between versions of a zone, kept on disk
//!   for incremental transfers (RFC 1995).

mod answers;
pub mod canonical;
pub mod journal;
mod loaded;
mod lookup;
pub mod served;
pub mod zone;
pub mod zonefile;

pub use journal::{Diff, Journal};
pub use served::{Reload, ServedZone, SwapObserver, ZoneSet, ZoneSources};
pub use zone::{Node, RRset, Zone, ZoneProblem};
