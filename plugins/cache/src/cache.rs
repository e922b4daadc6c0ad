//! The cache handler: lookup, storage, coalescing, prefetch and serve-stale.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxidns_server::OwnedNext;
use oxidns_server::proto::{
    Class, Name, Opcode, OptRcode, Query, Record, RecordData, Response, Rtype, Ttl, WireSections,
    in_zone,
};
use oxidns_server::{Handler, HandlerFuture, Next, PluginError, Request, Transport};
use quick_cache::{DefaultHashBuilder, Equivalent, Lifecycle, UnitWeighter};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::metrics::{Registry, ServerMetrics};

/// The TTL of a stale answer (RFC 8767 §4 recommends 30 seconds).
pub const STALE_TTL: u32 = 30;
/// After a failed refresh, stale data is served without asking upstream again
/// for this long (RFC 8767 §5, "failure recheck timer").
pub const FAILURE_RECHECK: Duration = Duration::from_secs(30);
/// How long a client waits for a refresh before it gets stale data in
/// `verify` mode (RFC 8767 §5, "client response timer").
pub const CLIENT_RESPONSE_TIMER: Duration = Duration::from_millis(1800);

/// Limits of one of the two caches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    /// How many responses it holds at most.
    pub capacity: usize,
    /// Responses are kept no longer than this …
    pub max_ttl: Duration,
    /// … and no shorter than this.
    pub min_ttl: Duration,
}

/// `prefetch AMOUNT [DURATION] [PERCENTAGE%]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefetch {
    /// Hits needed, each less than `window` after the one before.
    pub amount: u32,
    pub window: Duration,
    /// Refresh when less than this share of the TTL remains.
    pub percentage: u32,
}

/// `serve_stale [DURATION] [REFRESH_MODE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeStale {
    /// How long after expiry an entry may still be served.
    pub up_to: Duration,
    /// `verify`: ask upstream first; stale data only if that fails or is slow.
    pub verify: bool,
}

/// Everything the `cache` directive says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub zones: Vec<Name>,
    pub success: Tier,
    pub denial: Tier,
    pub prefetch: Option<Prefetch>,
    pub serve_stale: Option<ServeStale>,
    /// How long SERVFAIL answers are kept (0: not at all).
    pub servfail: Duration,
    /// Zones whose positive answers are not cached.
    pub disable_success: Vec<Name>,
    /// Zones whose negative answers are not cached.
    pub disable_denial: Vec<Name>,
    /// Answer with the TTLs as stored instead of counting them down.
    pub keepttl: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            zones: vec![Name::root()],
            success: Tier {
                capacity: crate::DEFAULT_CAPACITY,
                max_ttl: crate::MAX_SUCCESS_TTL,
                min_ttl: crate::MIN_TTL,
            },
            denial: Tier {
                capacity: crate::DEFAULT_CAPACITY,
                max_ttl: crate::MAX_DENIAL_TTL,
                min_ttl: crate::MIN_TTL,
            },
            prefetch: None,
            serve_stale: None,
            servfail: crate::DEFAULT_SERVFAIL,
            disable_success: Vec::new(),
            disable_denial: Vec::new(),
            keepttl: false,
        }
    }
}

/// The rest of the chain as a value a background task can own, for
/// prefetch and for refreshing stale entries after the client got its answer.
pub trait Upstream: Send + Sync + 'static {
    fn serve<'a>(&'a self, request: &'a mut Request) -> HandlerFuture<'a>;
}

/// The handlers after the cache, kept by a background task.
impl Upstream for OwnedNext {
    fn serve<'a>(&'a self, request: &'a mut Request) -> HandlerFuture<'a> {
        OwnedNext::serve(self, request)
    }
}

const DO: u8 = 1;
const CD: u8 = 2;
/// An NXDOMAIN for the name, whatever the type (RFC 2308 §5).
const BY_NAME: u8 = 4;

/// What a response is cached under: name (without regard to case), type,
/// class and the DO and CD bits.
///
/// The name is kept lower-cased ([`Key::of`]), so that hashing and comparing
/// work on its wire form as plain bytes: this runs for every query, and
/// hashing label by label (as the name type itself does), or lower-casing
/// for every comparison, cost a tenth of a cache hit.
#[derive(Clone, Debug)]
struct Key {
    name: Name,
    qtype: Rtype,
    qclass: Class,
    flags: u8,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        KeyRef::of(self).equivalent(other)
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        KeyRef::of(self).hash(state)
    }
}

/// A key borrowed from its parts, to look up without building a [`Key`].
#[derive(Clone, Copy)]
struct KeyRef<'a> {
    wire: &'a [u8],
    qtype: Rtype,
    qclass: Class,
    flags: u8,
}

/// The DO and CD bits of a key.
fn key_flags(query: &Query) -> u8 {
    let mut flags = 0;
    if query.dnssec_ok() {
        flags |= DO;
    }
    if query.cd {
        flags |= CD;
    }
    flags
}

impl<'a> KeyRef<'a> {
    /// The key of `query`, its name lower-cased in `buffer`: a lookup
    /// builds no [`Key`] and allocates nothing.
    fn of_query(query: &Query, buffer: &'a mut [u8; 255]) -> KeyRef<'a> {
        KeyRef {
            wire: oxidns_server::proto::lowercase_into(&query.qname, buffer),
            qtype: query.qtype,
            qclass: query.qclass,
            flags: key_flags(query),
        }
    }

    fn of(key: &'a Key) -> KeyRef<'a> {
        KeyRef {
            wire: key.name.as_slice(),
            qtype: key.qtype,
            qclass: key.qclass,
            flags: key.flags,
        }
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.wire);
        state.write_u16(self.qtype.to_int());
        state.write_u16(self.qclass.to_int());
        state.write_u8(self.flags);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.qtype == key.qtype
            && self.qclass == key.qclass
            && self.flags == key.flags
            && self.wire == key.name.as_slice()
    }
}

impl Key {
    fn of(query: &Query) -> Key {
        // A copy of its own: a slice of the query would keep the whole
        // received message alive as long as the entry.
        Key {
            name: oxidns_server::proto::lowercase(&query.qname),
            qtype: query.qtype,
            qclass: query.qclass,
            flags: key_flags(query),
        }
    }

    /// The key of an NXDOMAIN that covers every type of this name.
    fn by_name(&self) -> Key {
        Key {
            name: self.name.clone(),
            qtype: Rtype::ANY,
            qclass: self.qclass,
            flags: self.flags | BY_NAME,
        }
    }

    fn matches(&self, query: &Query) -> bool {
        self.qtype == query.qtype && self.qclass == query.qclass && self.name == query.qname
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Success,
    Denial,
}

/// What a response is, for caching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// An answer, or a referral: kept for its smallest TTL.
    Success(u32),
    /// NODATA (RFC 2308 §2.2): kept for the SOA's negative TTL.
    NoData(u32),
    /// NXDOMAIN; `by_name` when no CNAME leads to the name that does not exist.
    NxDomain {
        ttl: u32,
        by_name: bool,
    },
    ServFail,
}

/// A stored response and what the cache knows about it.
struct Entry {
    /// TTLs capped at `duration`; no EDNS options (they are hop-by-hop).
    response: StoredResponse,
    kind: Kind,
    stored: Duration,
    duration: Duration,
    /// Prefetch popularity: hits without a gap of the prefetch window.
    hits: AtomicU32,
    last_hit: AtomicU64,
    refreshing: AtomicBool,
    /// When the last refresh of this stale entry failed (ms, 0 = never).
    failed_at: AtomicU64,
}

impl Entry {
    fn age(&self, now: Duration) -> Duration {
        now.saturating_sub(self.stored)
    }

    fn fresh(&self, now: Duration) -> bool {
        self.age(now) < self.duration
    }

    /// Seconds to take off the stored TTLs now: the entry's age, or none
    /// with keepttl.
    fn ttl_age(&self, now: Duration, keepttl: bool) -> u32 {
        match keepttl {
            true => 0,
            false => u32::try_from(self.age(now).as_secs()).unwrap_or(u32::MAX),
        }
    }

    /// The response to `query` with the TTLs that remain (or as stored,
    /// with keepttl), with its records.
    fn answer(&self, query: &Query, now: Duration, keepttl: bool) -> Response {
        let age = self.ttl_age(now, keepttl);
        match &self.response {
            StoredResponse::Wire(wire) => decoded(query, wire.aged(age)),
            StoredResponse::Records(stored) => {
                let mut response = not_authoritative(stored.clone());
                if age > 0 {
                    rewrite_ttls(&mut response, |ttl| ttl.saturating_sub(age));
                }
                response
            }
        }
    }

    /// [`Entry::answer`] in wire form, when the entry has it.
    fn answer_in_wire_form(&self, now: Duration, keepttl: bool) -> Option<Response> {
        let StoredResponse::Wire(wire) = &self.response else {
            return None;
        };
        let age = self.ttl_age(now, keepttl);
        Some(not_authoritative(Response::from_wire(wire.aged(age))))
    }

    /// The response to `query` as stale data: every TTL 30 (RFC 8767 §4).
    fn stale_answer(&self, query: &Query) -> Response {
        let mut response = match &self.response {
            StoredResponse::Wire(wire) => decoded(query, wire.clone()),
            StoredResponse::Records(stored) => not_authoritative(stored.clone()),
        };
        rewrite_ttls(&mut response, |_| STALE_TTL);
        response
    }

    /// Counts a hit for prefetch and returns the hits in a row.
    fn touch(&self, now: Duration, window: Duration) -> u32 {
        let now_ms = millis(now);
        let last = self.last_hit.swap(now_ms, Ordering::Relaxed);
        if now_ms.saturating_sub(last) > millis(window) {
            self.hits.store(1, Ordering::Relaxed);
            1
        } else {
            self.hits.fetch_add(1, Ordering::Relaxed) + 1
        }
    }

    fn recently_failed(&self, now: Duration) -> bool {
        let failed = self.failed_at.load(Ordering::Relaxed);
        failed != 0 && millis(now).saturating_sub(failed) < millis(FAILURE_RECHECK)
    }

    fn mark_failed(&self, now: Duration) {
        self.failed_at.store(millis(now).max(1), Ordering::Relaxed);
    }
}

/// How an entry keeps its response: in wire form, which is all a hit
/// sends (the records are decoded again for the few chains whose plugins
/// read them), or as records when it has none (an answer too large for one
/// message). Not both: the records took about as much memory again.
enum StoredResponse {
    Wire(WireSections),
    Records(Response),
}

/// As the cache answers: it is no authority for what it stored.
fn not_authoritative(mut response: Response) -> Response {
    response.authoritative = false;
    response
}

/// The response of stored sections to `query` (a question for the entry's
/// name), with its records decoded.
fn decoded(query: &Query, sections: WireSections) -> Response {
    let mut response = not_authoritative(Response::from_wire(sections));
    if !response.decode_wire(query) {
        // Sections this cache encoded itself: they always decode.
        tracing::error!("a cached answer for {} did not decode", query.qname);
        return Response::new(oxidns_server::proto::Rcode::SERVFAIL);
    }
    response
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn rewrite_ttls(response: &mut Response, f: impl Fn(u32) -> u32) {
    let sections = response
        .answer
        .iter_mut()
        .chain(response.authority.iter_mut())
        .chain(response.additional.iter_mut());
    for record in sections {
        if record.rtype() != Rtype::OPT {
            record.set_ttl(Ttl::from_secs(f(record.ttl().as_secs())));
        }
    }
}

/// Counts the evictions of one insert.
#[derive(Clone, Default)]
struct Evictions;

impl Lifecycle<Key, Arc<Entry>> for Evictions {
    type RequestState = u64;

    fn on_evict(&self, evicted: &mut u64, _key: Key, _value: Arc<Entry>) {
        *evicted += 1;
    }
}

type Store = quick_cache::sync::Cache<Key, Arc<Entry>, UnitWeighter, DefaultHashBuilder, Evictions>;

fn store(capacity: usize) -> Store {
    Store::with(
        capacity,
        capacity as u64,
        UnitWeighter,
        DefaultHashBuilder::default(),
        Evictions,
    )
}

/// What one upstream query gave, for the queries that waited on it.
#[derive(Clone)]
enum Shared {
    Answer(Response),
    Failed(PluginError),
    /// Not something every asker may get (not cacheable): ask for yourself.
    Unshareable,
}

type Flights = Mutex<HashMap<Key, watch::Sender<Option<Shared>>>>;

/// The one upstream query for a key; its waiters hear when it is done, or
/// that it was given up when it is dropped unfinished.
struct Flight {
    inner: Arc<Inner>,
    key: Key,
    tx: watch::Sender<Option<Shared>>,
}

impl Flight {
    fn complete(self, shared: Shared) {
        self.tx.send_replace(Some(shared));
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights
            .get(&self.key)
            .is_some_and(|tx| tx.same_channel(&self.tx))
        {
            flights.remove(&self.key);
        }
    }
}

enum Join {
    Lead(Flight),
    Wait(watch::Receiver<Option<Shared>>),
}

/// What [`Inner::fresh_hit`] found when it could not answer.
struct Lookup {
    key: Key,
    /// A stale entry, or none (a miss).
    entry: Option<Arc<Entry>>,
    now: Duration,
    metrics: Arc<ServerMetrics>,
}

/// How to reach upstream: the chain after us, or an owned one for background work.
#[derive(Clone, Copy)]
enum Via<'a> {
    Next(Next<'a>),
    Owned(&'a dyn Upstream),
}

impl<'a> Via<'a> {
    fn serve<'r>(self, request: &'r mut Request) -> HandlerFuture<'r>
    where
        'a: 'r,
    {
        match self {
            Via::Next(next) => next.serve(request),
            Via::Owned(upstream) => upstream.serve(request),
        }
    }
}

pub(crate) struct Inner {
    settings: Settings,
    success: Store,
    denial: Store,
    flights: Flights,
    clock: Arc<dyn Clock>,
    metrics: Registry,
    client_response_timer: Duration,
}

/// The `cache` handler.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    /// A cache with these settings, counting time with `clock`.
    pub fn new(settings: Settings, clock: Arc<dyn Clock>) -> Cache {
        let zones: Vec<String> = settings
            .zones
            .iter()
            .map(oxidns_server::proto::name_text)
            .collect();
        Cache {
            inner: Arc::new(Inner {
                success: store(settings.success.capacity),
                denial: store(settings.denial.capacity),
                settings,
                flights: Mutex::new(HashMap::new()),
                clock,
                metrics: Registry::new(Arc::from(zones.join(","))),
                client_response_timer: CLIENT_RESPONSE_TIMER,
            }),
        }
    }

    /// How long `verify` waits for a refresh before serving stale data.
    pub fn with_client_response_timer(self, timer: Duration) -> Cache {
        self.rebuild(|inner| inner.client_response_timer = timer)
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Cache {
        let mut inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("configure the cache before sharing it"));
        change(&mut inner);
        Cache {
            inner: Arc::new(inner),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// How many responses are cached, positive and negative.
    pub fn len(&self) -> (usize, usize) {
        (self.inner.success.len(), self.inner.denial.len())
    }

    pub fn is_empty(&self) -> bool {
        self.inner.success.is_empty() && self.inner.denial.is_empty()
    }
}

impl Handler for Cache {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        if !self.inner.applies(&request.query) {
            return next.serve(request);
        }
        // A fresh hit is answered here, without a boxed future.
        match self.inner.fresh_hit(request, &next) {
            Ok(response) => HandlerFuture::ready(Ok(response)),
            Err(lookup) => HandlerFuture::new(self.inner.serve(request, next, lookup)),
        }
    }
}

impl Inner {
    /// Queries in our zones; never zone transfers, UPDATE or NOTIFY.
    fn applies(&self, query: &Query) -> bool {
        query.opcode == Opcode::QUERY
            && query.qtype != Rtype::AXFR
            && query.qtype != Rtype::IXFR
            && self
                .settings
                .zones
                .iter()
                .any(|zone| in_zone(&query.qname, zone))
    }

    /// A fresh entry's answer for `request`; else what the lookup found,
    /// for [`Inner::serve`].
    fn fresh_hit(self: &Arc<Self>, request: &Request, next: &Next<'_>) -> Result<Response, Lookup> {
        self.metrics.with(&request.server, |metrics| {
            self.fresh_hit_counted(request, next, metrics)
        })
    }

    fn fresh_hit_counted(
        self: &Arc<Self>,
        request: &Request,
        next: &Next<'_>,
        metrics: &Arc<ServerMetrics>,
    ) -> Result<Response, Lookup> {
        metrics.requests.increment(1);
        let mut lower = [0u8; 255];
        let key = KeyRef::of_query(&request.query, &mut lower);
        let now = self.clock.now();
        let entry = self.lookup(&key, now);
        match entry.as_ref().map(|entry| entry.kind) {
            None => metrics.misses.increment(1),
            Some(Kind::Success) => metrics.hits_success.increment(1),
            Some(Kind::Denial) => metrics.hits_denial.increment(1),
        }
        let entry = match entry {
            Some(entry) if entry.fresh(now) => entry,
            entry => {
                return Err(Lookup {
                    key: Key::of(&request.query),
                    entry,
                    now,
                    metrics: metrics.clone(),
                });
            }
        };
        self.maybe_prefetch(request, next, &entry, now, metrics);
        let keepttl = self.settings.keepttl;
        let wire = request
            .wire_answers
            .then(|| entry.answer_in_wire_form(now, keepttl))
            .flatten();
        let response = wire.unwrap_or_else(|| entry.answer(&request.query, now, keepttl));
        Ok(for_client(&request.query, response))
    }

    /// A miss, or a stale entry ([`Inner::fresh_hit`] found no fresh one).
    async fn serve(
        self: &Arc<Self>,
        request: &mut Request,
        next: Next<'_>,
        lookup: Lookup,
    ) -> Result<Response, PluginError> {
        let Lookup {
            key,
            entry,
            now,
            metrics,
        } = lookup;
        let result = match entry {
            None => self.fetch(request, next, &key, &metrics).await,
            Some(entry) => {
                self.serve_stale(request, next, &key, entry, now, &metrics)
                    .await
            }
        };
        result.map(|response| for_client(&request.query, response))
    }

    /// The entry for `key` that may be served now: fresh, or stale within
    /// the serve_stale bound. An NXDOMAIN for the name covers every type;
    /// when both exist the newer one wins.
    fn lookup(&self, key: &KeyRef<'_>, now: Duration) -> Option<Arc<Entry>> {
        let usable = |entry: &Arc<Entry>| {
            let bound = self
                .settings
                .serve_stale
                .as_ref()
                .map_or(Duration::ZERO, |s| s.up_to);
            entry.age(now) < entry.duration + bound
        };
        // A key is in one store at most (`admit` removes it from the other);
        // answers are the common case, so they are looked up first.
        let exact = self
            .success
            .get(key)
            .or_else(|| self.denial.get(key))
            .filter(usable);
        let by_name = if self.denial.is_empty() {
            None
        } else {
            let any_type = KeyRef {
                qtype: Rtype::ANY,
                flags: key.flags | BY_NAME,
                ..*key
            };
            self.denial.get(&any_type).filter(usable)
        };
        match (exact, by_name) {
            (Some(a), Some(b)) => Some(if b.stored > a.stored { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    fn join(self: &Arc<Self>, key: &Key) -> Join {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = flights.get(key) {
            return Join::Wait(tx.subscribe());
        }
        let (tx, _) = watch::channel(None);
        flights.insert(key.clone(), tx.clone());
        Join::Lead(Flight {
            inner: self.clone(),
            key: key.clone(),
            tx,
        })
    }

    /// A miss: one upstream query per key, however many clients ask at once.
    async fn fetch(
        self: &Arc<Self>,
        request: &mut Request,
        next: Next<'_>,
        key: &Key,
        metrics: &ServerMetrics,
    ) -> Result<Response, PluginError> {
        match self.join(key) {
            Join::Lead(flight) => {
                let (result, shared) = self
                    .resolve(request, Via::Next(next), key, false, metrics)
                    .await;
                flight.complete(shared);
                result
            }
            Join::Wait(rx) => match wait(rx).await {
                Some(Shared::Answer(response)) => Ok(response),
                Some(Shared::Failed(error)) => Err(error),
                // Given up, or not for everyone: ask for ourselves.
                Some(Shared::Unshareable) | None => {
                    let via = Via::Next(next);
                    self.resolve(request, via, key, false, metrics).await.0
                }
            },
        }
    }

    /// Asks upstream and stores what may be cached. `refresh`: an entry is
    /// being renewed, so a failure must not replace it (RFC 8767 §4).
    async fn resolve(
        &self,
        request: &mut Request,
        via: Via<'_>,
        key: &Key,
        refresh: bool,
        metrics: &ServerMetrics,
    ) -> (Result<Response, PluginError>, Shared) {
        let response = match via.serve(request).await {
            Ok(response) => response,
            Err(error) => return (Err(error.clone()), Shared::Failed(error)),
        };
        if !key.matches(&request.query) {
            // A plugin after us changed the question: not an answer to `key`.
            metrics.drops.increment(1);
            return (Ok(response), Shared::Unshareable);
        }
        match self.admit(key, response, refresh, metrics) {
            (stored, true) => (Ok(stored.clone()), Shared::Answer(stored)),
            (response, false) => (Ok(response), Shared::Unshareable),
        }
    }

    /// Stores `response` if it may be cached; returns it as the client gets
    /// it (TTLs capped) and true, or unchanged and false when it is not cached.
    fn admit(
        &self,
        key: &Key,
        mut response: Response,
        refresh: bool,
        metrics: &ServerMetrics,
    ) -> (Response, bool) {
        let Some(class) = classify(&response) else {
            return (response, false);
        };
        let settings = &self.settings;
        let (kind, duration) = match class {
            Shape::Success(ttl) => (Kind::Success, clamp(ttl, &settings.success)),
            Shape::NoData(ttl) | Shape::NxDomain { ttl, .. } => {
                (Kind::Denial, clamp(ttl, &settings.denial))
            }
            Shape::ServFail if refresh => return (response, false),
            Shape::ServFail => (Kind::Denial, settings.servfail),
        };
        let disabled = match kind {
            Kind::Success => &settings.disable_success,
            Kind::Denial => &settings.disable_denial,
        };
        if duration.is_zero() || disabled.iter().any(|zone| in_zone(&key.name, zone)) {
            return (response, false);
        }
        let cap = u32::try_from(duration.as_secs()).unwrap_or(u32::MAX);
        rewrite_ttls(&mut response, |ttl| ttl.min(cap));
        let now = self.clock.now();
        let previous = self.denial.peek(key).or_else(|| self.success.peek(key));
        // Wire sections never hold EDNS options; records kept lose theirs.
        let kept = match response.wire_sections(&key.name, key.qtype, key.qclass, &[]) {
            Some(wire) => StoredResponse::Wire(wire),
            None => {
                let mut stored = response.clone();
                stored.edns_options.clear();
                StoredResponse::Records(stored)
            }
        };
        let entry = Arc::new(Entry {
            response: kept,
            kind,
            stored: now,
            duration,
            // A refreshed entry keeps its popularity.
            hits: AtomicU32::new(
                previous
                    .as_ref()
                    .map_or(0, |p| p.hits.load(Ordering::Relaxed)),
            ),
            last_hit: AtomicU64::new(millis(now)),
            refreshing: AtomicBool::new(false),
            failed_at: AtomicU64::new(0),
        });
        let mut evicted = (0u64, 0u64);
        match class {
            Shape::Success(_) => {
                self.success
                    .insert_with_lifecycle(key.clone(), entry, &mut evicted.0);
                self.denial.remove(key);
                self.denial.remove(&key.by_name());
            }
            Shape::NoData(_) => {
                self.denial
                    .insert_with_lifecycle(key.clone(), entry, &mut evicted.1);
                self.success.remove(key);
                self.denial.remove(&key.by_name());
            }
            Shape::NxDomain { by_name: true, .. } => {
                self.denial
                    .insert_with_lifecycle(key.by_name(), entry, &mut evicted.1);
                self.success.remove(key);
                self.denial.remove(key);
            }
            Shape::NxDomain { by_name: false, .. } | Shape::ServFail => {
                self.denial
                    .insert_with_lifecycle(key.clone(), entry, &mut evicted.1);
                self.success.remove(key);
            }
        }
        metrics.evictions_success.increment(evicted.0);
        metrics.evictions_denial.increment(evicted.1);
        metrics.entries_success.set(self.success.len() as f64);
        metrics.entries_denial.set(self.denial.len() as f64);
        (response, true)
    }

    /// Starts a background refresh of a popular entry that is about to expire.
    fn maybe_prefetch(
        self: &Arc<Self>,
        request: &Request,
        next: &Next<'_>,
        entry: &Arc<Entry>,
        now: Duration,
        metrics: &Arc<ServerMetrics>,
    ) {
        let Some(prefetch) = &self.settings.prefetch else {
            return;
        };
        let hits = entry.touch(now, prefetch.window);
        let duration = entry.duration.as_secs();
        let threshold = (duration * u64::from(prefetch.percentage)).div_ceil(100);
        let remaining = duration.saturating_sub(entry.age(now).as_secs());
        if hits < prefetch.amount || remaining > threshold {
            return;
        }
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.spawn_refresh(request, next, &Key::of(&request.query), entry, metrics);
        metrics.prefetch.increment(1);
    }

    /// Refreshes `key` in the background (joining a refresh under way);
    /// returns where its outcome will be told.
    fn spawn_refresh(
        self: &Arc<Self>,
        request: &Request,
        next: &Next<'_>,
        key: &Key,
        entry: &Arc<Entry>,
        metrics: &Arc<ServerMetrics>,
    ) -> watch::Receiver<Option<Shared>> {
        let upstream = next.to_owned();
        let flight = match self.join(key) {
            Join::Wait(rx) => return rx,
            Join::Lead(flight) => flight,
        };
        let rx = flight.tx.subscribe();
        let mut background = background_request(request);
        let inner = self.clone();
        let key = key.clone();
        let entry = entry.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let via = Via::Owned(&upstream);
            let (result, shared) = inner
                .resolve(&mut background, via, &key, true, &metrics)
                .await;
            if !refreshed(&shared) {
                if let Err(error) = result {
                    tracing::debug!(target: "plugin/cache", "refresh failed: {error}");
                }
                entry.mark_failed(inner.clock.now());
                // A later hit may try again.
                entry.refreshing.store(false, Ordering::Release);
            }
            flight.complete(shared);
        });
        rx
    }

    /// An entry past its TTL but within the serve_stale bound (RFC 8767).
    async fn serve_stale(
        self: &Arc<Self>,
        request: &mut Request,
        next: Next<'_>,
        key: &Key,
        entry: Arc<Entry>,
        now: Duration,
        metrics: &Arc<ServerMetrics>,
    ) -> Result<Response, PluginError> {
        let stale = |metrics: &ServerMetrics| {
            metrics.served_stale.increment(1);
            Ok(entry.stale_answer(&request.query))
        };
        if entry.recently_failed(now) {
            return stale(metrics);
        }
        let verify = self.settings.serve_stale.as_ref().is_some_and(|s| s.verify);
        let timer = self.client_response_timer;
        let rx = self.spawn_refresh(request, &next, key, &entry, metrics);
        if !verify {
            // `immediate`: the stale answer now, the refresh behind it.
            return stale(metrics);
        }
        let outcome = tokio::time::timeout(timer, wait(rx)).await;
        match outcome {
            Ok(Some(Shared::Answer(response))) if renews(&response) => Ok(response),
            // Slow: stale now; a background refresh goes on and is stored.
            Err(_) => stale(metrics),
            Ok(_) => {
                entry.mark_failed(self.clock.now());
                stale(metrics)
            }
        }
    }
}

/// Whether a refresh got an answer that replaces stale data: NOERROR or
/// NXDOMAIN (RFC 8767 §4); SERVFAIL, REFUSED and errors do not.
fn refreshed(shared: &Shared) -> bool {
    matches!(shared, Shared::Answer(response) if renews(response))
}

fn renews(response: &Response) -> bool {
    response.rcode == OptRcode::NOERROR || response.rcode == OptRcode::NXDOMAIN
}

/// What a flight ended with; `None` when it was given up.
fn wait(
    mut rx: watch::Receiver<Option<Shared>>,
) -> Pin<Box<dyn Future<Output = Option<Shared>> + Send>> {
    Box::pin(async move {
        rx.wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| v.clone())
    })
}

/// A copy of the request for a query made after the client got its answer.
/// Over TCP as CoreDNS does, so that nothing after us truncates the answer.
fn background_request(request: &Request) -> Request {
    let mut copy = Request::new(
        request.query.clone(),
        request.client,
        request.local,
        Transport::Tcp,
        request.zone.clone(),
        request.server.clone(),
    );
    copy.metadata = request.metadata.clone();
    copy
}

/// The AD bit only for clients that asked for DNSSEC or for AD (RFC 6840 §5.7).
fn for_client(query: &Query, mut response: Response) -> Response {
    if !query.dnssec_ok() && !query.ad {
        response.authentic_data = false;
    }
    response
}

fn clamp(ttl: u32, tier: &Tier) -> Duration {
    let ttl = Duration::from_secs(u64::from(ttl));
    if ttl < tier.min_ttl {
        tier.min_ttl.min(tier.max_ttl)
    } else {
        ttl.min(tier.max_ttl)
    }
}

/// What kind of response this is for the cache, with the TTL it states;
/// `None` for what is never cached: truncated answers, REFUSED, FORMERR,
/// NOTIMP and other errors, and negative answers without a SOA (RFC 2308 §5).
fn classify(response: &Response) -> Option<Shape> {
    if response.truncated {
        return None;
    }
    let records = || {
        response
            .answer
            .iter()
            .chain(&response.authority)
            .chain(&response.additional)
            .filter(|r| r.rtype() != Rtype::OPT)
    };
    let min_ttl =
        |records: &mut dyn Iterator<Item = &Record>| records.map(|r| r.ttl().as_secs()).min();
    // RFC 2308 §3: the negative TTL is the smaller of the SOA's TTL and MINIMUM.
    let negative_ttl = || {
        let soa = response.authority.iter().find_map(|r| match r.data() {
            RecordData::Soa(soa) => Some(r.ttl().as_secs().min(soa.minimum().as_secs())),
            _ => None,
        })?;
        let answer = min_ttl(&mut response.answer.iter()).unwrap_or(u32::MAX);
        Some(soa.min(answer))
    };
    match response.rcode {
        OptRcode::NOERROR if !response.answer.is_empty() => {
            Some(Shape::Success(min_ttl(&mut records()).unwrap_or(0)))
        }
        OptRcode::NOERROR => {
            if let Some(ttl) = negative_ttl() {
                Some(Shape::NoData(ttl))
            } else if response.authority.iter().any(|r| r.rtype() == Rtype::NS) {
                // A referral.
                Some(Shape::Success(min_ttl(&mut records()).unwrap_or(0)))
            } else {
                None
            }
        }
        OptRcode::NXDOMAIN => negative_ttl().map(|ttl| Shape::NxDomain {
            ttl,
            // With a CNAME chain the NXDOMAIN is about its target, not the qname.
            by_name: response.answer.is_empty(),
        }),
        OptRcode::SERVFAIL => Some(Shape::ServFail),
        _ => None,
    }
}
