//! `secondary`: serves zones transferred in from primaries, as CoreDNS's
//! secondary plugin, with IXFR, NOTIFY and zones kept on disk.
//!
//! - Each zone is fetched from the `transfer from` addresses, tried in
//!   order: an SOA query over UDP, then, when the primary's serial is newer
//!   (RFC 1982), IXFR over TCP (RFC 1995) from our serial, falling back to
//!   AXFR (RFC 5936) when IXFR fails or its differences do not apply.
//! - A transfer is swapped in only whole: the records must build a valid
//!   [`Zone`], and the zone is first written to disk atomically (temporary
//!   file, fsync, rename) and then loaded from there. A failed transfer
//!   leaves the previous version serving.
//! - Timers from the SOA (RFC 1034 §4.3.5): a check every REFRESH, every
//!   RETRY after a failure, and after EXPIRE without a successful check the
//!   zone answers SERVFAIL until one succeeds. A NOTIFY (RFC 1996) from a
//!   listed primary starts a check at once; NOTIFY from anyone else is
//!   REFUSED.
//! - At start the zone file written last time is served at once, before
//!   any primary answers; its modification time is the time of the last
//!   successful check, so expiry survives restarts.
//! - The zones are registered in the block's [`ZoneSources`], so `transfer`
//!   can pass them on; a zone's first version is announced there too, so
//!   `transfer` sends NOTIFY downstream for it as for later ones.
//! - A zone marked `catalog` is a catalog zone (RFC 9432, see [`catalog`]):
//!   its members become secondary zones too.

mod catalog;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use oxidns_net::xfr::{self, Ixfr, IxfrDiff, XfrOptions, serial_newer};
use oxidns_net::{ExchangeOptions, OutgoingQuery, Protocol, Upstream, UpstreamConfig};
use oxidns_server::fallthrough::Fallthrough;
use oxidns_server::plugin::HookFuture;
use oxidns_server::proto::domain::base::rdata::ComposeRecordData;
use oxidns_server::proto::tsig::{self, Key, KeyRing};
use oxidns_server::proto::{Name, Opcode, OptRcode, Rcode, Record, RecordData, Response, Rtype};
use oxidns_server::proto::{lowercase, name_from_str, name_text};
use oxidns_server::{
    ConfigError, Handler, HandlerFuture, Lifecycle, Next, PluginEntry, Request, Setup,
};
use oxidns_zone::zonefile::{LoadedRecords, RecordDigest, digest_zone_file};
use oxidns_zone::{ServedZone, Zone, ZoneSet, ZoneSources};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "secondary",
    setup,
};

/// The wait before trying again when there is no zone yet (CoreDNS: 10s).
const RETRY_WITHOUT_ZONE: Duration = Duration::from_secs(10);
/// SOA timers below this are raised to it, so a zone cannot make us spin.
const MIN_TIMER: Duration = Duration::from_secs(1);
/// The wait for the answer to an SOA query.
const SOA_TIMEOUT: Duration = Duration::from_secs(2);

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let mut slots = Vec::new();
    let mut fallthrough = Fallthrough::Never;
    // `tsig` sets up first (plugin order): its keys are here for `key`.
    let keys = setup.shared::<KeyRing>();
    for directive in setup.directives() {
        let apexes = setup.zones_or_block(&directive.args)?;
        let mut primaries = Vec::new();
        let mut directory = None;
        let mut is_catalog = false;
        let mut key = None;
        let mut max_records = XfrOptions::default().max_records;
        for line in &directive.block {
            match line.name.text.as_str() {
                "transfer" => {
                    let args = line.args_between(2, usize::MAX)?;
                    if args[0].text != "from" {
                        return Err(line.error(format!(
                            "expected 'from', got '{}' (transfers out are the transfer plugin's)",
                            args[0].text
                        )));
                    }
                    for arg in &args[1..] {
                        primaries.push(parse_address(&arg.text).ok_or_else(|| {
                            line.error(format!("invalid address '{}'", arg.text))
                        })?);
                    }
                }
                "directory" => {
                    let dir = &line.args_between(1, 1)?[0].text;
                    directory = Some(setup.resolve_path(dir));
                }
                "fallthrough" => fallthrough = Fallthrough::parse(line)?,
                "key" => {
                    let text = &line.args_between(1, 1)?[0].text;
                    let name = name_from_str(text).map_err(|e| line.error(e))?;
                    key = Some(keys.get(&name).ok_or_else(|| {
                        line.error(format!(
                            "no TSIG key '{text}': define it with the tsig plugin's secret or secrets in this server block"
                        ))
                    })?);
                }
                "catalog" => {
                    line.args_between(0, 0)?;
                    is_catalog = true;
                }
                "max_records" => {
                    let text = &line.args_between(1, 1)?[0].text;
                    max_records =
                        text.parse()
                            .ok()
                            .filter(|&n: &usize| n > 0)
                            .ok_or_else(|| {
                                line.error(format!("'{text}' is not a positive count of records"))
                            })?;
                }
                _ => return Err(directive.unknown_property(line)),
            }
        }
        if primaries.is_empty() {
            return Err(directive.error("'transfer from' is required"));
        }
        for apex in apexes {
            let apex = lowercase(&apex);
            let folder = zone_file_name(&apex);
            let dir = directory
                .clone()
                .unwrap_or_else(|| setup.resolve_path(&folder));
            let path = dir.join(format!("db.{folder}"));
            let mut slot = Slot::new(apex, primaries.clone(), path);
            slot.key = key.clone();
            slot.max_records = max_records;
            if is_catalog {
                slot.catalog = true;
                slot.member_directory = directory.clone();
            }
            slots.push(Arc::new(slot));
        }
    }
    let sources = setup.shared::<ZoneSources>();
    for slot in &slots {
        sources.register(slot.set.clone());
    }
    if !setup.settings().opcodes.contains(&Opcode::NOTIFY) {
        setup.settings().opcodes.push(Opcode::NOTIFY);
    }
    let zones = slots
        .iter()
        .map(|slot| (lowercase(&slot.apex), slot.clone()))
        .collect();
    let secondary = Arc::new_cyclic(|me| Secondary {
        me: me.clone(),
        configured_slots: slots,
        zones: ArcSwap::from_pointee(zones),
        catalogs: Mutex::default(),
        sources,
        root: setup.resolve_path(""),
        started: AtomicBool::new(false),
        fallthrough,
        stop: CancellationToken::new(),
    });
    // Members saved by an earlier run serve at once, like their catalog.
    for slot in &secondary.configured_slots {
        if slot.catalog {
            secondary.update_catalog(slot);
        }
    }
    setup.add_handler(secondary.clone());
    setup.add_lifecycle(secondary);
    Ok(())
}

/// `ADDRESS` as `transfer from` takes it: an IP with an optional port (53
/// by default), IPv6 in brackets when a port is given.
fn parse_address(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip: IpAddr = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text)
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, 53))
}

/// The zone's name without the final dot ("root" for the root zone), for
/// file and folder names.
fn zone_file_name(apex: &Name) -> String {
    let text = name_text(apex);
    match text.trim_end_matches('.') {
        "" => "root".to_owned(),
        name => name.to_owned(),
    }
}

/// Where a zone stands.
const NOT_LOADED: u8 = 0;
const SERVING: u8 = 1;
const EXPIRED: u8 = 2;

/// One secondary zone.
struct Slot {
    apex: Name,
    primaries: Vec<SocketAddr>,
    /// The zone file we write and serve from.
    path: PathBuf,
    /// Holds the zone while it is serving, nothing otherwise.
    set: Arc<ZoneSet>,
    served: Mutex<Option<Arc<ServedZone>>>,
    state: AtomicU8,
    /// When the zone expires unless a check succeeds first.
    expires: Mutex<Option<Instant>>,
    /// Woken by NOTIFY.
    check_now: Notify,
    /// Woken when a transfer brought a new version.
    transferred: Notify,
    /// Cancelled when the zone is no longer served (a catalog dropped it).
    stop: CancellationToken,
    /// Set, under the lock, when the zone is no longer served: from then on
    /// no transfer writes its file (an install holds the lock throughout).
    retired: Arc<Mutex<bool>>,
    /// A catalog zone (RFC 9432), whose members are secondary zones too.
    catalog: bool,
    /// Where a catalog's members keep their files (`directory`), if set.
    member_directory: Option<PathBuf>,
    /// The TSIG key (`key`): signs our SOA queries and transfers, whose
    /// answers must verify, and NOTIFY must come signed with it.
    key: Option<Arc<Key>>,
    /// The most records a transfer may bring (`max_records`): a primary
    /// cannot make us hold an endless zone.
    max_records: usize,
}

/// What a check did.
#[derive(Debug)]
enum Checked {
    UpToDate(u32),
    Transferred,
}

/// Timers from an SOA: refresh, retry, expire.
#[derive(Clone, Copy, Debug)]
struct Timers {
    refresh: Duration,
    retry: Duration,
    expire: Duration,
}

impl Slot {
    fn new(apex: Name, primaries: Vec<SocketAddr>, path: PathBuf) -> Slot {
        let slot = Slot {
            apex,
            primaries,
            path,
            set: Arc::new(ZoneSet::default()),
            served: Mutex::new(None),
            state: AtomicU8::new(NOT_LOADED),
            expires: Mutex::new(None),
            check_now: Notify::new(),
            transferred: Notify::new(),
            stop: CancellationToken::new(),
            retired: Arc::default(),
            catalog: false,
            member_directory: None,
            key: None,
            max_records: XfrOptions::default().max_records,
        };
        slot.load_from_disk();
        slot
    }

    /// Serves the zone file of an earlier run, if there is a valid one.
    fn load_from_disk(&self) {
        if !self.path.exists() {
            return;
        }
        let served = match ServedZone::load(&self.path, &self.apex) {
            Ok((served, _)) => Arc::new(served),
            Err(problems) => {
                tracing::warn!(target: "plugin/secondary", "ignoring the saved copy of {}: {}", self.zone(), problems[0]);
                return;
            }
        };
        let timers = timers(&served.current());
        let age = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        let left = timers.expire.saturating_sub(age);
        *self.expires.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + left);
        let serial = served.current().serial().into_int();
        *self.served.lock().unwrap_or_else(|e| e.into_inner()) = Some(served.clone());
        if left.is_zero() {
            self.state.store(EXPIRED, Ordering::SeqCst);
            tracing::warn!(target: "plugin/secondary", "the saved copy of {} (serial {serial}) has expired", self.zone());
        } else {
            self.set.replace(vec![served]);
            self.state.store(SERVING, Ordering::SeqCst);
            tracing::info!(target: "plugin/secondary", "Serving {} serial {serial} from {}", self.zone(), self.path.display());
        }
    }

    fn zone(&self) -> String {
        name_text(&self.apex)
    }

    fn served(&self) -> Option<Arc<ServedZone>> {
        self.served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn current(&self) -> Option<Arc<Zone>> {
        self.served().map(|s| s.current())
    }

    fn xfr_options(&self) -> XfrOptions {
        XfrOptions {
            key: self.key.clone(),
            max_records: self.max_records,
            ..XfrOptions::default()
        }
    }

    /// The primary's serial: a plain SOA query, or with a key a signed one
    /// over TCP whose answer must verify.
    async fn primary_serial(&self, primary: SocketAddr) -> Result<u32, String> {
        match &self.key {
            None => primary_serial(primary, &self.apex).await,
            Some(_) => xfr::query_serial(primary, &self.apex, self.xfr_options())
                .await
                .map_err(|e| format!("SOA query: {e}")),
        }
    }

    /// Checks every primary in turn until one answers.
    async fn check(&self) -> Result<Checked, String> {
        let mut errors = Vec::new();
        for &primary in &self.primaries {
            match self.check_with(primary).await {
                Ok(checked) => return Ok(checked),
                Err(e) => {
                    tracing::warn!(target: "plugin/secondary", "transfer of {} from {primary} failed: {e}", self.zone());
                    errors.push(format!("{primary}: {e}"));
                }
            }
        }
        Err(errors.join("; "))
    }

    async fn check_with(&self, primary: SocketAddr) -> Result<Checked, String> {
        let theirs = match self.primary_serial(primary).await {
            Ok(serial) => Some(serial),
            // A catalog zone is not for resolution: primaries may refuse
            // queries for it (Knot does) yet transfer it, so IXFR from our
            // serial says whether there is news.
            Err(e) if self.catalog => {
                tracing::debug!(target: "plugin/secondary", "catalog {}: {e}; asking by transfer", self.zone());
                None
            }
            Err(e) => return Err(e),
        };
        let current = self.current();
        let ours = current.as_ref().map(|z| z.serial().into_int());
        if let (Some(ours), Some(theirs)) = (ours, theirs)
            && !serial_newer(theirs, ours)
        {
            return Ok(Checked::UpToDate(ours));
        }
        let mut incremental = false;
        let mut records = None;
        if let (Some(zone), Some(ours)) = (&current, ours) {
            match xfr::ixfr(primary, &self.apex, ours, self.xfr_options()).await {
                Ok(Ixfr::UpToDate(_)) => return Ok(Checked::UpToDate(ours)),
                Ok(Ixfr::Full(full)) => records = Some(full),
                Ok(Ixfr::Diffs(diffs)) => match apply(zone, &diffs) {
                    Ok(applied) => {
                        records = Some(applied);
                        incremental = true;
                    }
                    Err(e) => {
                        tracing::warn!(target: "plugin/secondary", "IXFR of {} from {primary} does not apply ({e}); trying AXFR", self.zone())
                    }
                },
                Err(e) => {
                    tracing::info!(target: "plugin/secondary", "IXFR of {} from {primary} failed ({e}); trying AXFR", self.zone())
                }
            }
        }
        let records = match records {
            Some(records) => transferred(records)?,
            None => {
                // Kept in wire form as they arrive (`LoadedRecords`).
                let mut loaded = LoadedRecords::default();
                let file = transfer_file();
                xfr::axfr(primary, &self.apex, self.xfr_options(), |record| {
                    loaded
                        .push(record, &file, 0)
                        .map_err(|_| xfr::XfrError::TooLarge)
                })
                .await
                .map_err(|e| {
                    if matches!(e, xfr::XfrError::TooLarge) {
                        metrics::counter!("oxidns_secondary_transfers_too_large_total", "zone" => self.zone())
                            .increment(1);
                    }
                    format!("AXFR: {e}")
                })?;
                loaded
            }
        };
        let serial = self.install(records, ours).await?;
        tracing::info!(
            target: "plugin/secondary",
            "Transferred {} serial {serial} from {primary} ({})",
            self.zone(),
            if incremental { "IXFR" } else { "AXFR" }
        );
        Ok(Checked::Transferred)
    }

    /// Checks the records, writes them to disk and serves them.
    async fn install(&self, records: LoadedRecords, ours: Option<u32>) -> Result<u32, String> {
        let apex = self.apex.clone();
        let path = self.path.clone();
        let served = self.served();
        let retired = self.retired.clone();
        let result = tokio::task::spawn_blocking(move || {
            let retired = retired.lock().unwrap_or_else(|e| e.into_inner());
            if *retired {
                return Err("the zone is no longer served".to_owned());
            }
            install_blocking(&apex, &path, records, ours, served)
        })
        .await
        .map_err(|e| format!("install task failed: {e}"))??;
        let (serial, fresh) = result;
        if let Some(fresh) = fresh {
            *self.served.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
        }
        Ok(serial)
    }

    /// A check succeeded: the zone serves (again) until EXPIRE from now.
    fn refreshed(&self) {
        let Some(served) = self.served() else { return };
        let timers = timers(&served.current());
        *self.expires.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + timers.expire);
        if self.state.swap(SERVING, Ordering::SeqCst) != SERVING {
            self.set.replace(vec![served.clone()]);
            // No swap told `transfer` of this version: say it is served now.
            self.set.announce(&served);
        }
        // The file's time records the last successful check, for restarts.
        if let Ok(file) = std::fs::File::options().append(true).open(&self.path) {
            let _ = file.set_modified(SystemTime::now());
        }
    }

    /// Stops serving the zone if it expired.
    fn expire_if_due(&self) {
        let due = self
            .expires
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at <= Instant::now());
        if due && self.state.swap(EXPIRED, Ordering::SeqCst) == SERVING {
            self.set.replace(Vec::new());
            tracing::error!(target: "plugin/secondary", "zone {} expired: no successful refresh within its SOA expire time; answering SERVFAIL", self.zone());
        }
    }

    /// Stops the refresh loop and serving, keeping the zone file.
    fn retire(&self) {
        // Waits for an install in progress; none starts after this.
        *self.retired.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.cancel();
        self.state.store(NOT_LOADED, Ordering::SeqCst);
        self.set.replace(Vec::new());
    }

    /// Stops serving the zone and deletes its file (and its folder, when
    /// it is the zone's own and now empty).
    fn remove(&self) {
        self.retire();
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(target: "plugin/secondary", "cannot delete {}: {e}", self.path.display());
        }
        if let Some(dir) = self.path.parent()
            && dir.file_name().and_then(|n| n.to_str()) == Some(zone_file_name(&self.apex).as_str())
        {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// The refresh loop: at once, then by the SOA's timers or a NOTIFY.
    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut wait = Duration::ZERO;
        loop {
            let expires = *self.expires.lock().unwrap_or_else(|e| e.into_inner());
            let until_expiry = expires.map(|at| at.saturating_duration_since(Instant::now()));
            let sleep = match until_expiry {
                Some(left) if left < wait && self.state.load(Ordering::SeqCst) == SERVING => left,
                _ => wait,
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.stop.cancelled() => return,
                _ = self.check_now.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
            self.expire_if_due();
            if sleep < wait && self.state.load(Ordering::SeqCst) != SERVING {
                // Woken for the expiry only: keep the retry schedule.
                wait -= sleep;
                continue;
            }
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.stop.cancelled() => return,
                outcome = self.check() => outcome,
            };
            match outcome {
                Ok(checked) => {
                    if let Checked::UpToDate(serial) = checked {
                        tracing::debug!(target: "plugin/secondary", "{} is up to date at serial {serial}", self.zone());
                    }
                    self.refreshed();
                    if let Checked::Transferred = checked {
                        self.transferred.notify_one();
                    }
                    wait = self
                        .current()
                        .map_or(RETRY_WITHOUT_ZONE, |z| timers(&z).refresh);
                }
                Err(e) => {
                    tracing::warn!(target: "plugin/secondary", "no primary of {} could be checked: {e}", self.zone());
                    self.expire_if_due();
                    wait = self
                        .current()
                        .map_or(RETRY_WITHOUT_ZONE, |z| timers(&z).retry);
                }
            }
        }
    }
}

/// Where transferred records say they come from in the zone builder's messages.
fn transfer_file() -> Arc<str> {
    Arc::from("transfer")
}

/// Records an IXFR brought (whole, or a version with its differences
/// applied), in wire form for the zone builder: each parsed record is freed
/// as it is stored.
fn transferred(records: Vec<Record>) -> Result<LoadedRecords, String> {
    let file = transfer_file();
    let mut loaded = LoadedRecords::default();
    for record in records {
        loaded.push(record, &file, 0)?;
    }
    Ok(loaded)
}

/// Builds the zone from transferred records, writes it to the zone file,
/// checks that the file reads back as written, and swaps the zone in: into
/// the serving zone, or as a new one when none served. Returns the serial
/// and the new zone, if new.
fn install_blocking(
    apex: &Name,
    path: &Path,
    records: LoadedRecords,
    ours: Option<u32>,
    served: Option<Arc<ServedZone>>,
) -> Result<(u32, Option<Arc<ServedZone>>), String> {
    let (zone, _) = Zone::build_loaded(apex, records)
        .map_err(|problems| format!("the transferred zone is not valid: {}", problems[0]))?;
    let serial = zone.serial().into_int();
    if let Some(ours) = ours
        && !serial_newer(serial, ours)
    {
        return Err(format!(
            "transferred serial {serial} is not newer than {ours}"
        ));
    }
    let mut written = RecordDigest::default();
    write_atomically(path, |out| write_zone(out, apex, &zone, &mut written))
        .map_err(|e| format!("cannot save {}: {e}", path.display()))?;
    // A file that would not load at the next start is refused now. Read
    // back as a digest, not a second zone: a big zone is held once.
    let read =
        digest_zone_file(path, apex).map_err(|e| format!("the saved zone does not load: {e}"))?;
    if read != written {
        return Err(format!(
            "the saved zone does not read back as written ({} records written, {} read)",
            written.records(),
            read.records()
        ));
    }
    Ok(match served {
        Some(served) => (served.install_written(zone), None),
        None => (serial, Some(Arc::new(ServedZone::written(path, zone)))),
    })
}

/// Writes the zone in master-file form: the SOA, then every other record,
/// each with its absolute owner, TTL and class, adding each record written
/// to `digest`. Record by record as they are decoded: the text of a big
/// zone is never held whole.
fn write_zone(
    out: &mut dyn std::io::Write,
    apex: &Name,
    zone: &Zone,
    digest: &mut RecordDigest,
) -> std::io::Result<()> {
    writeln!(
        out,
        "; {} serial {}, transferred in by oxidns (secondary)",
        name_text(apex),
        zone.serial().into_int()
    )?;
    let soa = oxidns_zone::journal::soa(zone);
    let rest = zone.records().filter(|r| r.rtype() != Rtype::SOA);
    for record in soa.into_iter().chain(rest) {
        if write_record(out, &record)? {
            digest.add(&record);
        }
    }
    Ok(())
}

/// Types whose presentation form reads back exactly; the rest are written
/// in the generic form of RFC 3597 §5 (`TYPE33 \# 8 …`), which always does.
const PRESENTED: &[Rtype] = &[
    Rtype::SOA,
    Rtype::NS,
    Rtype::A,
    Rtype::AAAA,
    Rtype::CNAME,
    Rtype::DNAME,
    Rtype::PTR,
    Rtype::MX,
    Rtype::TXT,
];

/// Writes one record; `false` if it has no wire form to write (left out).
fn write_record(out: &mut dyn std::io::Write, record: &Record) -> std::io::Result<bool> {
    if PRESENTED.contains(&record.rtype()) {
        writeln!(out, "{record}")?;
        return Ok(true);
    }
    let mut data = Vec::new();
    if record.data().compose_rdata(&mut data).is_err() {
        return Ok(false);
    }
    write!(
        out,
        "{}. {} {} TYPE{} \\# {}",
        name_text(record.owner()).trim_end_matches('.'),
        record.ttl().as_secs(),
        record.class(),
        record.rtype().to_int(),
        data.len()
    )?;
    if !data.is_empty() {
        out.write_all(b" ")?;
        for byte in data {
            write!(out, "{byte:02x}")?;
        }
    }
    out.write_all(b"\n")?;
    Ok(true)
}

/// Writes to `path` what `write` writes, so that a crash leaves the old
/// file or the new one, never part of one: a temporary file in the same folder, fsync,
/// rename, fsync of the folder.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("zone");
    let temp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&temp)?);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        if let Ok(folder) = std::fs::File::open(dir) {
            let _ = folder.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// A record as IXFR differences name it: owner (any case), class, type and
/// data; the TTL does not count.
fn record_key(record: &Record) -> String {
    format!(
        "{} {} {} {}",
        name_text(&lowercase(record.owner())),
        record.class(),
        record.rtype(),
        record.data()
    )
}

/// Applies difference sequences to a zone (RFC 1995 §4); a removal of a
/// record the zone lacks, or a sequence that does not start at the zone's
/// serial, means the differences are not for this zone.
fn apply(zone: &Zone, diffs: &[IxfrDiff]) -> Result<Vec<Record>, String> {
    let mut records: std::collections::BTreeMap<String, Record> = zone
        .records()
        .filter(|r| r.rtype() != Rtype::SOA)
        .map(|r| (record_key(&r), r))
        .collect();
    let mut serial = zone.serial().into_int();
    let mut soa = None;
    for diff in diffs {
        if xfr::soa_serial(&diff.from_soa) != Some(serial) {
            return Err(format!(
                "a difference starts at another serial than {serial}"
            ));
        }
        for removed in &diff.removed {
            if records.remove(&record_key(removed)).is_none() {
                return Err(format!("removes a record the zone lacks: {removed}"));
            }
        }
        for added in &diff.added {
            if added.rtype() == Rtype::SOA {
                return Err("adds a second SOA".to_owned());
            }
            records.insert(record_key(added), added.clone());
        }
        serial = xfr::soa_serial(&diff.to_soa).unwrap_or(serial);
        soa = Some(diff.to_soa.clone());
    }
    let soa = soa.ok_or("no differences")?;
    let mut out = vec![soa];
    out.extend(records.into_values());
    Ok(out)
}

/// Refresh, retry and expire of the zone's SOA, raised to at least a second.
fn timers(zone: &Zone) -> Timers {
    let soa = zone.records().find(|r| r.rtype() == Rtype::SOA);
    let (refresh, retry, expire) = match soa.as_ref().map(|r| r.data()) {
        Some(RecordData::Soa(soa)) => (
            soa.refresh().as_secs(),
            soa.retry().as_secs(),
            soa.expire().as_secs(),
        ),
        _ => (3600, 600, 604_800),
    };
    let secs = |s: u32| Duration::from_secs(u64::from(s)).max(MIN_TIMER);
    Timers {
        refresh: secs(refresh),
        retry: secs(retry),
        expire: secs(expire),
    }
}

/// The primary's serial for the zone, from an SOA query over UDP (TCP when
/// truncated).
async fn primary_serial(primary: SocketAddr, apex: &Name) -> Result<u32, String> {
    let upstream = Upstream::new(
        primary,
        UpstreamConfig {
            expire: Some(Duration::ZERO),
            ..UpstreamConfig::default()
        },
    );
    let mut query = OutgoingQuery::new(apex.clone(), Rtype::SOA);
    query.rd = false;
    let options = ExchangeOptions {
        protocol: Protocol::Udp,
        tcp_on_truncation: true,
        timeout: Some(SOA_TIMEOUT),
    };
    let answer = upstream
        .exchange(&query, options)
        .await
        .map_err(|e| format!("SOA query: {e}"))?;
    let response = answer.response.response;
    if response.rcode != OptRcode::NOERROR {
        return Err(format!("SOA query answered {}", response.rcode));
    }
    response
        .answer
        .iter()
        .find(|r| r.rtype() == Rtype::SOA && *r.owner() == *apex)
        .and_then(xfr::soa_serial)
        .ok_or_else(|| "SOA query answered without the zone's SOA".to_owned())
}

struct Secondary {
    me: std::sync::Weak<Secondary>,
    /// The zones of the directives.
    configured_slots: Vec<Arc<Slot>>,
    /// Every zone served, configured or a catalog's member, by apex (lower case).
    zones: ArcSwap<HashMap<Name, Arc<Slot>>>,
    catalogs: Mutex<catalog::Catalogs>,
    sources: Arc<ZoneSources>,
    /// The folder relative paths start from (the *root* plugin's).
    root: PathBuf,
    /// Whether refresh loops run yet (zones added before start at startup).
    started: AtomicBool,
    fallthrough: Fallthrough,
    stop: CancellationToken,
}

impl Secondary {
    /// The zone with the longest apex that holds `qname`.
    fn slot_for(&self, qname: &Name) -> Option<Arc<Slot>> {
        let zones = self.zones.load();
        lowercase(qname)
            .iter_suffixes()
            .find_map(|suffix| zones.get(&suffix).cloned())
    }

    /// Starts the zone's refresh loop, unless startup will.
    fn start(&self, slot: &Arc<Slot>) {
        if self.started.load(Ordering::SeqCst) {
            tokio::spawn(slot.clone().run(self.stop.clone()));
        }
    }

    /// Follows a catalog zone: its members change with every transfer.
    async fn follow_catalog(self: Arc<Self>, slot: Arc<Slot>) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = slot.transferred.notified() => {}
            }
            let secondary = self.clone();
            let catalog = slot.clone();
            let _ = tokio::task::spawn_blocking(move || secondary.update_catalog(&catalog)).await;
        }
    }
}

impl Handler for Secondary {
    fn name(&self) -> &'static str {
        "secondary"
    }

    // Answers from its zones; other names pass on unread.
    fn reads_answers(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, request: &'a mut Request, next: Next<'a>) -> HandlerFuture<'a> {
        let Some(slot) = self.slot_for(request.qname()) else {
            return next.serve_or_refuse(request);
        };
        if request.query.opcode == Opcode::NOTIFY {
            return ready(notified(&slot, request));
        }
        if slot.state.load(Ordering::SeqCst) != SERVING {
            return ready(Response::new(Rcode::SERVFAIL));
        }
        let query = &request.query;
        match slot.set.answer(
            &query.qname,
            query.qtype,
            query.qclass,
            query.dnssec_ok(),
            request.wire_answers,
        ) {
            None => ready(Response::new(Rcode::SERVFAIL)),
            Some(response) => self.fallthrough.answer_or_next(response, request, next),
        }
    }
}

/// Answers a NOTIFY (RFC 1996 §3.7, §4.7): from a listed primary, NOERROR
/// with AA and a check at once; from anyone else, REFUSED.
fn notified(slot: &Slot, request: &Request) -> Response {
    let client = request.client.ip();
    if *request.qname() != slot.apex || request.qtype() != Rtype::SOA {
        return Response::new(Rcode::NOTAUTH);
    }
    if !slot
        .primaries
        .iter()
        .any(|p| p.ip().to_canonical() == client)
    {
        tracing::warn!(target: "plugin/secondary", "refused NOTIFY for {} from {client}: not a primary of the zone", slot.zone());
        return Response::new(Rcode::REFUSED);
    }
    // With a key, only a NOTIFY that `tsig` verified with it counts.
    if let Some(key) = &slot.key
        && request.metadata.get(tsig::METADATA_KEY) != Some(name_text(key.name()).as_str())
    {
        tracing::warn!(target: "plugin/secondary", "refused NOTIFY for {} from {client}: not signed with key {}", slot.zone(), name_text(key.name()));
        return Response::new(Rcode::REFUSED);
    }
    tracing::info!(target: "plugin/secondary", "NOTIFY for {} from {client}: checking for a new version", slot.zone());
    slot.check_now.notify_one();
    let mut response = Response::new(Rcode::NOERROR);
    response.authoritative = true;
    response
}

fn ready(response: Response) -> HandlerFuture<'static> {
    HandlerFuture::ready(Ok(response))
}

impl Lifecycle for Secondary {
    fn startup(&self) -> HookFuture<'_, Result<(), String>> {
        self.started.store(true, Ordering::SeqCst);
        for slot in self.zones.load().values() {
            tokio::spawn(slot.clone().run(self.stop.clone()));
        }
        if let Some(me) = self.me.upgrade() {
            for slot in self.configured_slots.iter().filter(|slot| slot.catalog) {
                tokio::spawn(me.clone().follow_catalog(slot.clone()));
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn shutdown(&self) -> HookFuture<'_, ()> {
        self.stop.cancel();
        Box::pin(std::future::ready(()))
    }

    /// Ready once every configured zone has been loaded, from disk or a
    /// transfer (catalog members come and go, and do not count).
    fn ready(&self) -> bool {
        self.configured_slots
            .iter()
            .all(|slot| slot.state.load(Ordering::SeqCst) != NOT_LOADED)
    }
}

#[cfg(test)]
mod tests;
