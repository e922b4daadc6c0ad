//! Log lines in CoreDNS's shape, on standard output:
//! `[INFO] plugin/reload: message`, or `[INFO] message` for query logs.

use std::fmt;

use oxidns_server::logging;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

struct CoreDnsFormat;

impl<S, N> FormatEvent<S, N> for CoreDnsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG | Level::TRACE => "DEBUG",
        };
        write!(writer, "[{level}] ")?;
        let target = event.metadata().target();
        if target.starts_with("plugin/") {
            write!(writer, "{target}: ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the global subscriber; DEBUG lines show only when `debug` is on.
pub fn init() {
    let layer = tracing_subscriber::fmt::layer()
        .event_format(CoreDnsFormat)
        .with_writer(std::io::stdout)
        .with_filter(filter_fn(|meta| {
            *meta.level() <= Level::INFO || logging::debug_enabled()
        }));
    tracing_subscriber::registry().with(layer).init();
}
