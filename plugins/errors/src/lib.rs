//! `errors`: logs the errors of the plugins after it, as CoreDNS's errors plugin does.
//!
//! When the rest of the chain fails, the error is logged as
//! `RCODE NAME TYPE: ERROR` and returned unchanged, so the client still gets
//! SERVFAIL. `consolidate DURATION REGEXP [LEVEL] [show_first]` counts the
//! errors that match REGEXP instead, and logs one summary line DURATION
//! after the first of them.

use oxidns_server::duration::{format_go_duration, parse_go_duration};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxidns_server::plugin::{HookFuture, Lifecycle};
use oxidns_server::proto::{Name, Rcode, Rtype, lowercase, name_text};
use oxidns_server::{
    ConfigError, Directive, Handler, HandlerFuture, Next, PluginEntry, PluginError, Request, Setup,
};
use regex::Regex;
use tokio::task::AbortHandle;
use tracing::Level;

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "errors",
    setup,
};

/// The longest REGEXP accepted, as in CoreDNS (a bound on compile time and memory).
const MAX_REGEXP_LEN: usize = 10_000;

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    match directive.arg_texts().as_slice() {
        [] | ["stdout"] => {}
        [other] => {
            return Err(directive.error(format!(
                "invalid log file '{other}': only stdout is supported"
            )));
        }
        _ => {
            directive.args_between(0, 1)?;
        }
    }
    let mut patterns = Vec::new();
    for line in &directive.block {
        line.no_block()?;
        match line.name.text.as_str() {
            // Panics are not errors here: there is no stack to print (see README).
            "stacktrace" => {
                if !line.args.is_empty() {
                    return Err(ConfigError::at(
                        &line.name,
                        format!(
                            "errors: stacktrace takes no arguments, got {}",
                            line.args.len()
                        ),
                    ));
                }
            }
            "consolidate" => patterns.push(parse_consolidate(line)?),
            _ => return Err(directive.unknown_property(line)),
        }
    }
    let shared = Arc::new(Shared {
        patterns,
        stopped: AtomicBool::new(false),
    });
    setup.add_handler(Arc::new(Errors {
        shared: shared.clone(),
    }));
    setup.add_lifecycle(shared);
    Ok(())
}

/// `consolidate DURATION REGEXP [LEVEL] [show_first]`
fn parse_consolidate(line: &Directive) -> Result<Pattern, ConfigError> {
    let err =
        |message: String| ConfigError::at(&line.name, format!("errors: consolidate: {message}"));
    let args = line.arg_texts();
    if !(2..=4).contains(&args.len()) {
        return Err(err(format!(
            "takes DURATION REGEXP [LEVEL] [show_first], got {} argument(s)",
            args.len()
        )));
    }
    let period =
        parse_go_duration(args[0]).ok_or_else(|| err(format!("invalid duration '{}'", args[0])))?;
    if args[1].len() > MAX_REGEXP_LEN {
        return Err(err(format!(
            "regex pattern too long: {} > {MAX_REGEXP_LEN}",
            args[1].len()
        )));
    }
    let regex = Regex::new(args[1])
        .map_err(|e| err(format!("invalid regexp '{}': {}", args[1], first_line(&e))))?;
    let mut level = None;
    let mut show_first = false;
    for arg in &args[2..] {
        let as_level = match *arg {
            "warning" => Some(Level::WARN),
            "error" => Some(Level::ERROR),
            "info" => Some(Level::INFO),
            "debug" => Some(Level::DEBUG),
            _ => None,
        };
        match (as_level, *arg) {
            (Some(_), _) if level.is_some() => {
                return Err(err("more than one log level".to_owned()));
            }
            (Some(_), _) if show_first => {
                return Err(err("the log level must come before show_first".to_owned()));
            }
            (Some(new), _) => level = Some(new),
            (None, "show_first") => show_first = true,
            (None, other) => {
                return Err(err(format!(
                    "unknown option '{other}': want warning, error, info, debug or show_first"
                )));
            }
        }
    }
    Ok(Pattern {
        period,
        regex,
        level: level.unwrap_or(Level::ERROR),
        show_first,
        count: AtomicU32::new(0),
        timer: Mutex::new(None),
    })
}

/// The regex crate's messages span lines; a config error keeps to one.
fn first_line(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map_or_else(
            || text.lines().next().unwrap_or("").to_owned(),
            |l| l.trim_start_matches("error:").trim().to_owned(),
        )
}

/// One `consolidate` line and its running count.
struct Pattern {
    period: Duration,
    regex: Regex,
    level: Level,
    show_first: bool,
    /// Errors seen since the period started; 0 when no period runs.
    count: AtomicU32,
    /// The task that reports the count at the end of the period.
    timer: Mutex<Option<AbortHandle>>,
}

struct Shared {
    patterns: Vec<Pattern>,
    /// Set at shutdown: from then on every error is logged on its own.
    stopped: AtomicBool,
}

impl Shared {
    /// Logs the error of a failed request, or counts it for its pattern.
    fn report(self: &Arc<Self>, qname: &Name, qtype: Rtype, error: &PluginError) {
        let text = error.to_string();
        let mut level = Level::ERROR;
        if let Some(index) = self.patterns.iter().position(|p| p.regex.is_match(&text)) {
            if self.consolidate(index) {
                return;
            }
            level = self.patterns[index].level;
        }
        // The rcode is the number, as CoreDNS logs it; a failed chain answers SERVFAIL.
        emit(
            level,
            &format!(
                "{} {} {}: {}",
                Rcode::SERVFAIL.to_int(),
                name_text(&lowercase(qname)),
                type_text(qtype),
                text
            ),
        );
    }

    /// Counts an error for pattern `index`; false when it is to be logged now
    /// (after shutdown, or as the first one with `show_first`).
    fn consolidate(self: &Arc<Self>, index: usize) -> bool {
        if self.stopped.load(Ordering::SeqCst) {
            return false;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let pattern = &self.patterns[index];
        if pattern.count.fetch_add(1, Ordering::SeqCst) > 0 {
            return true;
        }
        let shared = self.clone();
        let period = pattern.period;
        let task = runtime.spawn(async move {
            tokio::time::sleep(period).await;
            shared.flush(index);
        });
        *pattern.timer.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        if self.stopped.load(Ordering::SeqCst) {
            // Shutdown came while the timer was being set: report now.
            task.abort();
            self.flush(index);
        }
        !pattern.show_first
    }

    /// Logs the summary of pattern `index` and starts its count again.
    fn flush(&self, index: usize) {
        let pattern = &self.patterns[index];
        let count = pattern.count.swap(0, Ordering::SeqCst);
        if count == 0 || (count == 1 && pattern.show_first) {
            return;
        }
        emit(
            pattern.level,
            &format!(
                "{count} errors like '{}' occurred in last {}",
                pattern.regex.as_str(),
                format_go_duration(pattern.period)
            ),
        );
    }

    /// Stops counting and reports what was counted so far.
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for (index, pattern) in self.patterns.iter().enumerate() {
            if let Some(timer) = pattern
                .timer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                timer.abort();
            }
            self.flush(index);
        }
    }
}

impl Lifecycle for Shared {
    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.stop();
        Box::pin(std::future::ready(()))
    }
}

fn emit(level: Level, message: &str) {
    match level {
        Level::ERROR => tracing::error!(target: "plugin/errors", "{}", message),
        Level::WARN => tracing::warn!(target: "plugin/errors", "{}", message),
        Level::INFO => tracing::info!(target: "plugin/errors", "{}", message),
        _ => tracing::debug!(target: "plugin/errors", "{}", message),
    }
}

/// Type mnemonics as Go's DNS library writes them.
fn type_text(rtype: Rtype) -> String {
    if rtype.to_int() == 23 {
        return "NSAP-PTR".to_owned();
    }
    rtype.to_string()
}

struct Errors {
    shared: Arc<Shared>,
}

impl Handler for Errors {
    fn name(&self) -> &'static str {
        "errors"
    }

    // Sees errors only.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let question = (request.qname().clone(), request.qtype());
        next.serve(request).map(move |result| {
            if let Err(error) = &result {
                self.shared.report(&question.0, question.1, error);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::Config;
    use oxidns_server::proto::Response;
    use oxidns_server::test_util::capture_logs as capture;
    use oxidns_server::test_util::{
        Failing, Fixed, config, config_error, request, serve_and_finish, serve_chain,
    };

    /// The errors handler set up from `options` (the lines of its block), then `end`.
    fn chain(options: &str, end: Arc<dyn Handler>) -> (Config, Vec<Arc<dyn Handler>>) {
        let corefile = format!(". {{\n errors {{\n{options}\n }}\n}}");
        let config = config(&corefile, &[PLUGIN]).unwrap();
        let chain = vec![config.blocks[0].chain[0].clone(), end];
        (config, chain)
    }

    async fn fail(chain: &[Arc<dyn Handler>], qname: &str) {
        let mut req = request(qname, Rtype::A);
        let result = serve_chain(chain, &mut req).await;
        assert_eq!(result, Err(PluginError::new("failing", "test failure")));
    }

    const FAILURE: &str = "2 example.org. A: plugin/failing: test failure";

    #[tokio::test]
    async fn chain_error_is_logged_and_returned_unchanged() {
        let (capture, _guard) = capture();
        fail(&chain("", Arc::new(Failing)).1, "Example.ORG").await;
        let events = capture.events();
        assert_eq!(
            events,
            [(Level::ERROR, "plugin/errors".to_owned(), FAILURE.to_owned())]
        );
    }

    #[tokio::test]
    async fn failing_request_is_answered_servfail() {
        let config = config(". {\n errors\n}", &[PLUGIN]).unwrap();
        let (capture, _guard) = capture();
        let (response, _) = serve_and_finish(&config, request("example.org", Rtype::MX)).await;
        assert_eq!(response.header_rcode(), Rcode::SERVFAIL);
        assert_eq!(
            capture.take(),
            [(
                Level::ERROR,
                "2 example.org. MX: plugin/chain: no next plugin found".to_owned()
            )]
        );
    }

    #[tokio::test]
    async fn answers_are_not_logged() {
        let (capture, _guard) = capture();
        let (_config, chain) = chain("", Arc::new(Fixed(Response::new(Rcode::NXDOMAIN))));
        let mut req = request("example.org", Rtype::A);
        assert!(serve_chain(&chain, &mut req).await.is_ok());
        assert!(capture.take().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn consolidate_counts_matching_errors_and_logs_one_summary() {
        let (capture, _guard) = capture();
        let (_config, chain) = chain(
            "consolidate 30s \"test failure$\" warning",
            Arc::new(Failing),
        );
        for _ in 0..3 {
            fail(&chain, "example.org").await;
        }
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(capture.take().is_empty(), "nothing before the period ends");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            capture.take(),
            [(
                Level::WARN,
                "3 errors like 'test failure$' occurred in last 30s".to_owned()
            )]
        );
        // A new period starts with the next error.
        fail(&chain, "example.org").await;
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(
            capture.take(),
            [(
                Level::WARN,
                "1 errors like 'test failure$' occurred in last 30s".to_owned()
            )]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn errors_that_match_no_pattern_are_logged_at_once() {
        let (capture, _guard) = capture();
        let (_config, chain) = chain("consolidate 5m \"^timeout\"", Arc::new(Failing));
        fail(&chain, "example.org").await;
        assert_eq!(capture.take(), [(Level::ERROR, FAILURE.to_owned())]);
        tokio::time::sleep(Duration::from_secs(301)).await;
        assert!(capture.take().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn first_matching_pattern_takes_the_error() {
        let (capture, _guard) = capture();
        let options = "consolidate 10s failure info\nconsolidate 20s test";
        let (_config, chain) = chain(options, Arc::new(Failing));
        fail(&chain, "example.org").await;
        fail(&chain, "example.org").await;
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(
            capture.take(),
            [(
                Level::INFO,
                "2 errors like 'failure' occurred in last 10s".to_owned()
            )]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn show_first_logs_the_first_error_then_a_summary_of_more() {
        let (capture, _guard) = capture();
        let (_config, chain) = chain(
            "consolidate 1m failure warning show_first",
            Arc::new(Failing),
        );
        fail(&chain, "example.org").await;
        fail(&chain, "example.org").await;
        assert_eq!(capture.take(), [(Level::WARN, FAILURE.to_owned())]);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(
            capture.take(),
            [(
                Level::WARN,
                "2 errors like 'failure' occurred in last 1m0s".to_owned()
            )]
        );
        // Alone in its period, the first error has no summary.
        fail(&chain, "example.org").await;
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(capture.take(), [(Level::WARN, FAILURE.to_owned())]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_reports_pending_counts_then_logs_each_error() {
        let (capture, _guard) = capture();
        let (config, chain) = chain("consolidate 1h failure", Arc::new(Failing));
        fail(&chain, "example.org").await;
        fail(&chain, "example.org").await;
        for (_, lifecycle) in config.lifecycles() {
            lifecycle.shutdown().await;
        }
        assert_eq!(
            capture.take(),
            [(
                Level::ERROR,
                "2 errors like 'failure' occurred in last 1h0m0s".to_owned()
            )]
        );
        fail(&chain, "example.org").await;
        assert_eq!(capture.take(), [(Level::ERROR, FAILURE.to_owned())]);
        tokio::time::sleep(Duration::from_secs(7200)).await;
        assert!(capture.take().is_empty(), "the aborted timer logs nothing");
    }

    #[test]
    fn setup_errors() {
        let long = "x".repeat(MAX_REGEXP_LEN + 1);
        let long_case = format!(". {{\n errors {{\n  consolidate 1s {long}\n }}\n}}");
        let cases = [
            (
                ". {\n errors\n errors\n}".to_owned(),
                "Corefile:3: errors: this plugin can only be used once per server block",
            ),
            (
                ". {\n errors /var/log/x\n}".to_owned(),
                "Corefile:2: errors: invalid log file '/var/log/x': only stdout is supported",
            ),
            (
                ". {\n errors stdout more\n}".to_owned(),
                "Corefile:2: errors: takes 0 to 1 arguments, got 2",
            ),
            (
                ". {\n errors {\n  verbose\n }\n}".to_owned(),
                "Corefile:3: errors: unknown property 'verbose'",
            ),
            (
                ". {\n errors {\n  stacktrace yes\n }\n}".to_owned(),
                "Corefile:3: errors: stacktrace takes no arguments, got 1",
            ),
            (
                ". {\n errors {\n  consolidate 1s\n }\n}".to_owned(),
                "Corefile:3: errors: consolidate: takes DURATION REGEXP [LEVEL] [show_first], got 1 argument(s)",
            ),
            (
                ". {\n errors {\n  consolidate 1x abc\n }\n}".to_owned(),
                "Corefile:3: errors: consolidate: invalid duration '1x'",
            ),
            (
                ". {\n errors {\n  consolidate 1s a(b\n }\n}".to_owned(),
                "Corefile:3: errors: consolidate: invalid regexp 'a(b': unclosed group",
            ),
            (
                ". {\n errors {\n  consolidate 1s abc loud\n }\n}".to_owned(),
                "Corefile:3: errors: consolidate: unknown option 'loud': want warning, error, info, debug or show_first",
            ),
            (
                ". {\n errors {\n  consolidate 1s abc info debug\n }\n}".to_owned(),
                "Corefile:3: errors: consolidate: more than one log level",
            ),
            (
                ". {\n errors {\n  consolidate 1s abc show_first info\n }\n}".to_owned(),
                "Corefile:3: errors: consolidate: the log level must come before show_first",
            ),
            (
                long_case,
                "Corefile:3: errors: consolidate: regex pattern too long: 10001 > 10000",
            ),
        ];
        for (corefile, expected) in &cases {
            assert_eq!(config_error(corefile, &[PLUGIN]), *expected, "{corefile:?}");
        }
    }

    #[test]
    fn valid_configurations_are_accepted() {
        for corefile in [
            ". {\n errors\n}",
            ". {\n errors stdout\n}",
            ". {\n errors {\n  stacktrace\n  consolidate 5m \".* i/o timeout$\" warning\n  consolidate 30s \"^Failed to .+\" error show_first\n  consolidate 1h x show_first\n }\n}",
        ] {
            assert!(config(corefile, &[PLUGIN]).is_ok(), "{corefile:?}");
        }
    }
}
