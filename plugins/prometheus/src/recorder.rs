//! The process-wide `metrics` recorder: counters and histograms kept per
//! thread and summed on scrape, so that workers answering at once never write
//! to the same cache line (issue #8: "metrics per worker, summed on scrape").
//!
//! Why not `metrics-exporter-prometheus`: its counters are one shared atomic
//! per series, written by every worker on every query, and its histograms keep
//! each sample until a scrape or an upkeep pass drains them: memory that grows
//! with the query rate for as long as nobody scrapes. Here a histogram is a
//! fixed set of bucket counts, recorded without allocating. The registry of
//! series (sharded maps looked up by key) is `metrics-util`'s.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_util::registry::{Registry, Storage};

/// CoreDNS's duration buckets: 0.25 ms doubling 16 times.
static DURATION_BUCKETS: LazyLock<Vec<f64>> =
    LazyLock::new(|| (0..16).map(|i| 0.00025 * f64::from(1u32 << i)).collect());

/// CoreDNS's message size buckets, in bytes.
const SIZE_BUCKETS: [f64; 14] = [
    0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3,
];

/// Prometheus's client default buckets, for any other histogram.
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Per-thread slots in every counter and histogram: twice the CPUs (UDP
/// threads and runtime threads), a power of two, at most 64. Threads beyond
/// that share slots, which stays correct (the slots are atomics) and merely
/// shares a cache line again.
static SLOTS: LazyLock<usize> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cpus).next_power_of_two().min(64)
});

/// This thread's slot: threads take numbers in the order they first record.
fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) & (*SLOTS - 1);
    }
    SLOT.with(|slot| *slot)
}

/// Eight counts: one cache line, so slots of different threads never share one.
#[repr(align(64))]
#[derive(Default)]
struct Line([AtomicU64; 8]);

/// Counts kept `width` per thread slot, each slot on lines of its own.
struct Slotted {
    lines_per_slot: usize,
    lines: Box<[Line]>,
}

impl Slotted {
    fn new(width: usize) -> Slotted {
        let lines_per_slot = width.div_ceil(8);
        Slotted {
            lines_per_slot,
            lines: (0..lines_per_slot * *SLOTS)
                .map(|_| Line::default())
                .collect(),
        }
    }

    fn at(&self, slot: usize, index: usize) -> &AtomicU64 {
        let line = slot * self.lines_per_slot + index / 8;
        &self.lines[line].0[index % 8]
    }

    /// Count `index` summed over the slots.
    fn sum(&self, index: usize) -> u64 {
        (0..*SLOTS).fold(0u64, |sum, slot| {
            sum.wrapping_add(self.at(slot, index).load(Ordering::Relaxed))
        })
    }
}

/// A counter with a slot per thread.
pub(crate) struct SlottedCounter(Slotted);

impl SlottedCounter {
    fn new() -> SlottedCounter {
        SlottedCounter(Slotted::new(1))
    }

    pub(crate) fn value(&self) -> u64 {
        self.0.sum(0)
    }
}

impl CounterFn for SlottedCounter {
    fn increment(&self, value: u64) {
        self.0.at(slot(), 0).fetch_add(value, Ordering::Relaxed);
    }

    /// Raises the sum to `value` (never lowers it, as Prometheus counters).
    fn absolute(&self, value: u64) {
        let current = self.value();
        if value > current {
            self.increment(value - current);
        }
    }
}

/// A histogram of fixed buckets with a slot per thread: per slot a count per
/// bucket (`le` the bucket's bound, not cumulative), one above the last bound,
/// and the sum of the values as `f64` bits.
pub(crate) struct BucketHistogram {
    bounds: &'static [f64],
    counts: Slotted,
}

impl BucketHistogram {
    fn new(bounds: &'static [f64]) -> BucketHistogram {
        BucketHistogram {
            bounds,
            counts: Slotted::new(bounds.len() + 2),
        }
    }

    fn sum_index(&self) -> usize {
        self.bounds.len() + 1
    }

    /// Cumulative counts by bound, then the total count, and the sum.
    fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        let mut total = 0u64;
        for index in 0..=self.bounds.len() {
            total = total.wrapping_add(self.counts.sum(index));
            if index < self.bounds.len() {
                cumulative.push(total);
            }
        }
        let sum = (0..*SLOTS)
            .map(|slot| {
                f64::from_bits(
                    self.counts
                        .at(slot, self.sum_index())
                        .load(Ordering::Relaxed),
                )
            })
            .sum();
        (cumulative, total, sum)
    }
}

impl HistogramFn for BucketHistogram {
    fn record(&self, value: f64) {
        // Prometheus buckets are "less than or equal": the first bound >= value.
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        let slot = slot();
        self.counts.at(slot, bucket).fetch_add(1, Ordering::Relaxed);
        // This thread's own slot: the exchange fails only when threads share a slot.
        let sum = self.counts.at(slot, self.sum_index());
        let _ = sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }
}

/// How series are stored: slotted counters and histograms, plain gauges
/// (a gauge is set, not summed).
struct SlottedStorage;

impl Storage<Key> for SlottedStorage {
    type Counter = Arc<SlottedCounter>;
    type Gauge = Arc<AtomicU64>;
    type Histogram = Arc<BucketHistogram>;

    fn counter(&self, _: &Key) -> Self::Counter {
        Arc::new(SlottedCounter::new())
    }

    fn gauge(&self, _: &Key) -> Self::Gauge {
        Arc::new(AtomicU64::new(0))
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        let name = key.name();
        let bounds: &'static [f64] = if name.ends_with("_duration_seconds") {
            &DURATION_BUCKETS
        } else if name.ends_with("_size_bytes") {
            &SIZE_BUCKETS
        } else {
            &DEFAULT_BUCKETS
        };
        Arc::new(BucketHistogram::new(bounds))
    }
}

/// The recorder `metrics::counter!` and friends register with.
pub(crate) struct SlottedRecorder {
    registry: Registry<Key, SlottedStorage>,
    /// `# HELP` text by metric name.
    descriptions: Mutex<BTreeMap<String, SharedString>>,
}

impl SlottedRecorder {
    pub(crate) fn new() -> SlottedRecorder {
        SlottedRecorder {
            registry: Registry::new(SlottedStorage),
            descriptions: Mutex::new(BTreeMap::new()),
        }
    }

    fn describe(&self, name: KeyName, description: SharedString) {
        self.descriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.as_str().to_owned(), description);
    }

    /// Every series in the Prometheus text exposition format (0.0.4):
    /// families sorted by name, each with its `# HELP` (if described) and
    /// `# TYPE`, then its series sorted by labels.
    pub(crate) fn render(&self) -> String {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        self.registry.visit_counters(|key, counter| {
            Family::of(&mut families, key, "counter").push(
                "",
                &labels(key),
                None,
                &counter.value().to_string(),
            );
        });
        self.registry.visit_gauges(|key, gauge| {
            let value = f64::from_bits(gauge.load(Ordering::Relaxed));
            Family::of(&mut families, key, "gauge").push("", &labels(key), None, &number(value));
        });
        self.registry.visit_histograms(|key, histogram| {
            let family = Family::of(&mut families, key, "histogram");
            let labels = labels(key);
            let (cumulative, total, sum) = histogram.snapshot();
            for (bound, count) in histogram.bounds.iter().zip(cumulative) {
                family.push(
                    "_bucket",
                    &labels,
                    Some(&number(*bound)),
                    &count.to_string(),
                );
            }
            family.push("_bucket", &labels, Some("+Inf"), &total.to_string());
            family.push("_sum", &labels, None, &number(sum));
            family.push("_count", &labels, None, &total.to_string());
        });
        let descriptions = self.descriptions.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        for (name, mut family) in families {
            if let Some(help) = descriptions.get(&name) {
                let help = help.replace('\\', r"\\").replace('\n', r"\n");
                let _ = writeln!(text, "# HELP {name} {help}");
            }
            let _ = writeln!(text, "# TYPE {name} {}", family.kind);
            // Stable order; a histogram's lines keep theirs (sorted by series first).
            family.lines.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, line) in family.lines {
                let _ = writeln!(text, "{name}{line}");
            }
        }
        text
    }
}

/// One metric family's lines while a scrape is built: (series labels, line).
struct Family {
    kind: &'static str,
    lines: Vec<(String, String)>,
}

impl Family {
    fn of<'f>(
        families: &'f mut BTreeMap<String, Family>,
        key: &Key,
        kind: &'static str,
    ) -> &'f mut Family {
        families
            .entry(key.name().to_owned())
            .or_insert_with(|| Family {
                kind,
                lines: Vec::new(),
            })
    }

    /// `SUFFIX{LABELS[,le="BOUND"]} VALUE`, the name added when written.
    fn push(&mut self, suffix: &str, labels: &str, le: Option<&str>, value: &str) {
        let mut line = String::from(suffix);
        match (labels.is_empty(), le) {
            (true, None) => {}
            (true, Some(le)) => {
                let _ = write!(line, "{{le=\"{le}\"}}");
            }
            (false, None) => {
                let _ = write!(line, "{{{labels}}}");
            }
            (false, Some(le)) => {
                let _ = write!(line, "{{{labels},le=\"{le}\"}}");
            }
        }
        let _ = write!(line, " {value}");
        self.lines.push((labels.to_owned(), line));
    }
}

/// `name="value",…` in the key's order, values escaped as the format says.
fn labels(key: &Key) -> String {
    let mut text = String::new();
    for (i, label) in key.labels().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let value = label
            .value()
            .replace('\\', r"\\")
            .replace('"', "\\\"")
            .replace('\n', r"\n");
        let _ = write!(text, "{}=\"{value}\"", label.key());
    }
    text
}

/// A sample value as Prometheus reads it (`+Inf`, `-Inf`, `NaN`).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

impl Recorder for SlottedRecorder {
    fn describe_counter(&self, name: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(name, description);
    }

    fn describe_gauge(&self, name: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(name, description);
    }

    fn describe_histogram(&self, name: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(name, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// A recorder of its own for each test: the global one is process-wide.
#[cfg(test)]
mod tests {
    use super::*;
    use metrics::with_local_recorder;

    fn recorded(record: impl FnOnce()) -> String {
        let recorder = SlottedRecorder::new();
        with_local_recorder(&recorder, record);
        recorder.render()
    }

    #[test]
    fn counters_from_many_threads_sum_on_scrape() {
        let recorder = SlottedRecorder::new();
        let counter = with_local_recorder(
            &recorder,
            || metrics::counter!("test_requests_total", "server" => "dns://:53"),
        );
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let counter = counter.clone();
                scope.spawn(move || (0..1000).for_each(|_| counter.increment(1)));
            }
        });
        counter.increment(5);
        assert_eq!(
            recorder.render(),
            "# TYPE test_requests_total counter\ntest_requests_total{server=\"dns://:53\"} 4005\n"
        );
    }

    #[test]
    fn each_thread_writes_to_its_own_slot() {
        let counter = SlottedCounter::new();
        // Threads take slot numbers in turn, process-wide (other tests' too),
        // so two threads share a slot only when their numbers wrap.
        let slots: Vec<usize> = std::thread::scope(|scope| {
            [1, 10]
                .map(|amount| {
                    let counter = &counter;
                    scope.spawn(move || {
                        counter.increment(amount);
                        slot()
                    })
                })
                .map(|thread| thread.join().unwrap())
                .to_vec()
        });
        let in_slot = |slot: usize| counter.0.at(slot, 0).load(Ordering::Relaxed);
        if slots[0] == slots[1] {
            assert_eq!(in_slot(slots[0]), 11);
        } else {
            assert_eq!((in_slot(slots[0]), in_slot(slots[1])), (1, 10));
        }
        assert_eq!(counter.value(), 11);
    }

    #[test]
    fn absolute_raises_a_counter_and_never_lowers_it() {
        let counter = SlottedCounter::new();
        counter.absolute(10);
        counter.absolute(4);
        assert_eq!(counter.value(), 10);
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let text = recorded(|| {
            let size = metrics::histogram!("test_response_size_bytes", "proto" => "udp");
            for value in [0.0, 100.0, 150.0, 70000.0] {
                size.record(value);
            }
        });
        for line in [
            "# TYPE test_response_size_bytes histogram",
            "test_response_size_bytes_bucket{proto=\"udp\",le=\"0\"} 1",
            "test_response_size_bytes_bucket{proto=\"udp\",le=\"100\"} 2",
            "test_response_size_bytes_bucket{proto=\"udp\",le=\"200\"} 3",
            "test_response_size_bytes_bucket{proto=\"udp\",le=\"64000\"} 3",
            "test_response_size_bytes_bucket{proto=\"udp\",le=\"+Inf\"} 4",
            "test_response_size_bytes_sum{proto=\"udp\"} 70250",
            "test_response_size_bytes_count{proto=\"udp\"} 4",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
        }
        let first = text.find("le=\"0\"").unwrap();
        assert!(first < text.find("le=\"100\"").unwrap(), "{text}");
        assert!(text.find("le=\"200\"").unwrap() < text.find("+Inf").unwrap());
    }

    #[test]
    fn durations_use_coredns_s_buckets_and_others_prometheus_s() {
        let text = recorded(|| {
            metrics::histogram!("test_request_duration_seconds").record(0.001);
            metrics::histogram!("test_lag").record(0.001);
        });
        assert!(text.contains("test_request_duration_seconds_bucket{le=\"0.00025\"} 0\n"));
        assert!(text.contains("test_request_duration_seconds_bucket{le=\"8.192\"} 1\n"));
        assert!(text.contains("test_lag_bucket{le=\"0.005\"} 1\n"), "{text}");
    }

    #[test]
    fn buckets_are_coredns_s() {
        let buckets = &DURATION_BUCKETS;
        assert_eq!(buckets.len(), 16);
        assert!((buckets[0] - 0.00025).abs() < 1e-12);
        assert!((buckets[15] - 8.192).abs() < 1e-9);
    }

    #[test]
    fn help_gauges_and_escaped_labels_render_as_the_format_says() {
        let text = recorded(|| {
            metrics::describe_gauge!("test_entries", "Entries\nin the cache.");
            metrics::gauge!("test_entries", "zone" => "a\"b\\c").set(2.5);
            metrics::gauge!("test_ratio").set(f64::INFINITY);
        });
        assert!(
            text.contains(
                "# HELP test_entries Entries\\nin the cache.\n# TYPE test_entries gauge\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("test_entries{zone=\"a\\\"b\\\\c\"} 2.5\n"),
            "{text}"
        );
        assert!(text.contains("test_ratio +Inf\n"), "{text}");
    }
}
