//! Zones being served from files: the set a plugin answers from, each zone a
//! snapshot swapped whole on reload, read without locks.
//!
//! A query in flight keeps the snapshot it started with (an `Arc`), so it
//! never sees half a zone; a reload that fails leaves the old zone serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use domain::base::iana::{Class, Rtype};
use oxidns_proto::{Name, Rcode, Response, ZoneMap};

use crate::zone::{Zone, ZoneProblem};

/// What identifies a version of a file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

/// One zone and the file it comes from.
pub struct ServedZone {
    pub apex: Name,
    pub path: PathBuf,
    zone: ArcSwap<Zone>,
    stamp: Mutex<Option<FileStamp>>,
    /// Those of the set this zone was put in first.
    observers: OnceLock<SwapObservers>,
}

/// Told after a reload swapped a new version of a zone in: the zone, the
/// version it replaced, and the new one (the same `Arc` twice when a zone
/// first serves, see [`ZoneSet::announce`]). Runs on the reloading thread (a
/// blocking task): quick work or blocking I/O, nothing that waits on the
/// async runtime.
pub type SwapObserver = Arc<dyn Fn(&ServedZone, &Arc<Zone>, &Arc<Zone>) + Send + Sync>;

/// A list of observers that zones and sets share.
#[derive(Clone, Default)]
struct SwapObservers(Arc<Mutex<Vec<SwapObserver>>>);

impl SwapObservers {
    fn notify(&self, zone: &ServedZone, old: &Arc<Zone>, new: &Arc<Zone>) {
        let observers = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for observer in observers {
            observer(zone, old, new);
        }
    }
}

/// What a reload check did.
#[derive(Debug)]
pub enum Reload {
    /// The file did not change.
    Unchanged,
    /// The file changed but the SOA serial did not: kept the old zone, as CoreDNS does.
    SameSerial,
    /// The new version is serving.
    Reloaded {
        serial: u32,
        warnings: Vec<ZoneProblem>,
    },
    /// The new version has errors; the old one keeps serving.
    Failed(Vec<ZoneProblem>),
}

impl ServedZone {
    /// Loads the zone `apex` from `path`.
    pub fn load(
        path: &Path,
        apex: &Name,
    ) -> Result<(ServedZone, Vec<ZoneProblem>), Vec<ZoneProblem>> {
        let stamp = FileStamp::of(path);
        let (zone, warnings) = Zone::load(path, apex)?;
        Ok((
            ServedZone {
                apex: zone.apex().clone(),
                path: path.to_owned(),
                zone: ArcSwap::from_pointee(zone),
                stamp: Mutex::new(stamp),
                observers: OnceLock::new(),
            },
            warnings,
        ))
    }

    /// Serves `zone`, which was just written to `path` (and read back
    /// there as written): a later reload only reads the file if it changes.
    pub fn written(path: &Path, zone: Zone) -> ServedZone {
        ServedZone {
            apex: zone.apex().clone(),
            path: path.to_owned(),
            stamp: Mutex::new(FileStamp::of(path)),
            zone: ArcSwap::from_pointee(zone),
            observers: OnceLock::new(),
        }
    }

    /// Swaps in `zone`, just written to this zone's file (as
    /// [`ServedZone::written`]). Returns its serial.
    pub fn install_written(&self, zone: Zone) -> u32 {
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = FileStamp::of(&self.path);
        self.swap_in(zone)
    }

    fn swap_in(&self, zone: Zone) -> u32 {
        let serial = zone.serial().into_int();
        let new = Arc::new(zone);
        let old = self.zone.swap(new.clone());
        if let Some(observers) = self.observers.get() {
            observers.notify(self, &old, &new);
        }
        serial
    }

    /// The snapshot being served.
    pub fn current(&self) -> Arc<Zone> {
        self.zone.load_full()
    }

    /// Re-reads the file if it changed, and swaps the new zone in when its
    /// serial differs (blocking: call from a blocking task).
    pub fn reload_if_changed(&self) -> Reload {
        let stamp = FileStamp::of(&self.path);
        {
            let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if *last == stamp {
                return Reload::Unchanged;
            }
            *last = stamp;
        }
        match Zone::load(&self.path, &self.apex) {
            Err(problems) => Reload::Failed(problems),
            Ok((zone, warnings)) => {
                if zone.serial() == self.current().serial() {
                    return Reload::SameSerial;
                }
                let serial = self.swap_in(zone);
                Reload::Reloaded { serial, warnings }
            }
        }
    }
}

/// The zones a plugin serves, found by longest match.
#[derive(Default)]
pub struct ZoneSet {
    /// Keyed by the apex in lower-case wire format.
    zones: ArcSwap<ZoneMap<Arc<ServedZone>>>,
    observers: SwapObservers,
}

impl ZoneSet {
    pub fn new(zones: Vec<ServedZone>) -> ZoneSet {
        let set = ZoneSet::default();
        set.replace(zones.into_iter().map(Arc::new).collect());
        set
    }

    /// Serves exactly these zones from now on.
    pub fn replace(&self, zones: Vec<Arc<ServedZone>>) {
        for zone in &zones {
            zone.observers.get_or_init(|| self.observers.clone());
        }
        let map = zones.into_iter().map(|z| (z.apex.clone(), z)).collect();
        self.zones.store(Arc::new(map));
    }

    /// Calls `observer` whenever a zone of this set, now or later, swaps a
    /// new version in.
    pub fn on_swap(&self, observer: SwapObserver) {
        self.observers
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(observer);
    }

    /// Every zone, in no particular order.
    pub fn zones(&self) -> Vec<Arc<ServedZone>> {
        self.zones.load().values().cloned().collect()
    }

    /// Tells the observers that `zone` of this set serves a version they
    /// have not seen, without a swap (a secondary's first transfer): they
    /// get that version as both old and new.
    pub fn announce(&self, zone: &ServedZone) {
        let current = zone.current();
        self.observers.notify(zone, &current, &current);
    }

    /// The zone with the longest apex that contains `qname`.
    pub fn find(&self, qname: &Name) -> Option<Arc<ServedZone>> {
        let zones = self.zones.load();
        zones.longest_match(qname).map(|(_, zone)| zone.clone())
    }

    /// Answers from the zone that holds `qname`; `None` when no zone does.
    /// Zone transfers are not answered here (they belong to `transfer`), nor
    /// classes other than the zone's.
    ///
    /// With `wire_form`, a repeated question may be answered in wire form
    /// ([`Zone::lookup_wire`]), for chains that never read answer records.
    pub fn answer(
        &self,
        qname: &Name,
        qtype: Rtype,
        qclass: Class,
        dnssec_ok: bool,
        wire_form: bool,
    ) -> Option<Response> {
        // Guards, not clones: no reference count shared by every worker is
        // touched per query.
        let zones = self.zones.load();
        let zone = zones.longest_match(qname)?.1.zone.load();
        if (qclass != zone.class() && qclass != Class::ANY)
            || matches!(qtype, Rtype::AXFR | Rtype::IXFR)
        {
            return Some(Response::new(Rcode::REFUSED));
        }
        Some(if wire_form {
            zone.lookup_wire(qname, qtype, dnssec_ok)
        } else {
            zone.lookup(qname, qtype, dnssec_ok)
        })
    }
}

/// The zone sets of one server block's authoritative plugins (`file`,
/// `auto`, later `secondary`), for plugins that work on their zones, such as
/// `transfer`. Each source registers its set at setup through
/// `Setup::shared::<ZoneSources>()`; readers look at start-up or query time.
#[derive(Default)]
pub struct ZoneSources {
    sets: Mutex<Vec<Arc<ZoneSet>>>,
    observers: Mutex<Vec<SwapObserver>>,
}

impl ZoneSources {
    /// Adds a plugin's zone set; observers already registered watch it too.
    pub fn register(&self, set: Arc<ZoneSet>) {
        for observer in self
            .observers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            set.on_swap(observer.clone());
        }
        self.sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(set);
    }

    /// The zone with exactly this apex, from the first source (in plugin
    /// order) that serves it.
    pub fn zone(&self, apex: &Name) -> Option<Arc<ServedZone>> {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        sets.iter()
            .filter_map(|set| set.find(apex))
            .find(|zone| zone.apex == *apex)
    }

    /// Every zone of every source.
    pub fn zones(&self) -> Vec<Arc<ServedZone>> {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        sets.iter().flat_map(|set| set.zones()).collect()
    }

    /// Calls `observer` whenever a zone of any source, registered now or
    /// later, swaps a new version in.
    pub fn on_swap(&self, observer: SwapObserver) {
        for set in self.sets.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            set.on_swap(observer.clone());
        }
        self.observers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(observer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_proto::{OptRcode, name_from_str};

    const ZONE: &str = "$ORIGIN example.org.\n$TTL 60\n@ SOA ns h SERIAL 1 1 1 1\n@ NS ns\nns A 192.0.2.1\nwww A ADDRESS\n";

    fn zone_text(serial: u32, address: &str) -> String {
        ZONE.replace("SERIAL", &serial.to_string())
            .replace("ADDRESS", address)
    }

    struct TempZone(std::path::PathBuf);

    impl TempZone {
        fn new(text: &str) -> TempZone {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("oxidns-served-{}-{n}", std::process::id()));
            std::fs::write(&path, text).unwrap();
            TempZone(path)
        }

        fn rewrite(&self, text: &str) {
            // A different length makes the change visible even within one mtime tick.
            std::fs::write(&self.0, text).unwrap();
        }
    }

    impl Drop for TempZone {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn www(set: &ZoneSet) -> String {
        let r = set
            .answer(
                &name_from_str("www.example.org").unwrap(),
                Rtype::A,
                Class::IN,
                false,
                false,
            )
            .unwrap();
        r.answer[0].data().to_string()
    }

    fn load(file: &TempZone) -> ZoneSet {
        let apex = name_from_str("example.org").unwrap();
        ZoneSet::new(vec![ServedZone::load(&file.0, &apex).unwrap().0])
    }

    #[test]
    fn a_new_serial_is_swapped_in() {
        let file = TempZone::new(&zone_text(1, "192.0.2.80"));
        let set = load(&file);
        let before = set.zones()[0].current();
        file.rewrite(&zone_text(2, "192.0.2.123"));
        assert!(matches!(
            set.zones()[0].reload_if_changed(),
            Reload::Reloaded { serial: 2, .. }
        ));
        assert_eq!(www(&set), "192.0.2.123");
        // A query that took the old snapshot still sees the whole old zone.
        let old = before.lookup(&name_from_str("www.example.org").unwrap(), Rtype::A, false);
        assert_eq!(old.answer[0].data().to_string(), "192.0.2.80");
    }

    #[test]
    fn sources_find_zones_and_observers_hear_of_swaps() {
        let file = TempZone::new(&zone_text(1, "192.0.2.80"));
        let sources = ZoneSources::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        // Registered before the set: observers reach sets added later.
        sources.on_swap(Arc::new(move |zone, old, new| {
            log.lock().unwrap().push((
                zone.apex.to_string(),
                old.serial().into_int(),
                new.serial().into_int(),
            ));
        }));
        let set = Arc::new(load(&file));
        sources.register(set.clone());
        let apex = name_from_str("Example.ORG").unwrap();
        assert!(sources.zone(&apex).is_some());
        assert!(
            sources
                .zone(&name_from_str("www.example.org").unwrap())
                .is_none()
        );
        assert_eq!(sources.zones().len(), 1);
        file.rewrite(&zone_text(2, "192.0.2.123"));
        set.zones()[0].reload_if_changed();
        assert_eq!(*seen.lock().unwrap(), [("example.org".to_owned(), 1, 2)]);
    }

    #[test]
    fn an_unchanged_file_is_not_reread() {
        let file = TempZone::new(&zone_text(1, "192.0.2.80"));
        let set = load(&file);
        assert!(matches!(
            set.zones()[0].reload_if_changed(),
            Reload::Unchanged
        ));
    }

    #[test]
    fn a_change_without_a_new_serial_is_not_served() {
        let file = TempZone::new(&zone_text(1, "192.0.2.80"));
        let set = load(&file);
        file.rewrite(&zone_text(1, "192.0.2.200"));
        assert!(matches!(
            set.zones()[0].reload_if_changed(),
            Reload::SameSerial
        ));
        assert_eq!(www(&set), "192.0.2.80");
    }

    #[test]
    fn a_broken_file_keeps_the_last_good_zone() {
        let file = TempZone::new(&zone_text(1, "192.0.2.80"));
        let set = load(&file);
        file.rewrite(&format!("{}www CNAME ns\n", zone_text(2, "192.0.2.81")));
        match set.zones()[0].reload_if_changed() {
            Reload::Failed(problems) => {
                assert!(problems[0].message.contains("CNAME"), "{problems:?}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(www(&set), "192.0.2.80");
    }

    #[test]
    fn the_longest_matching_zone_answers() {
        let parent = TempZone::new(&zone_text(1, "192.0.2.80"));
        let child_text = zone_text(1, "192.0.2.99").replace("example.org.", "sub.example.org.");
        let child = TempZone::new(&child_text);
        let set = ZoneSet::new(vec![
            ServedZone::load(&parent.0, &name_from_str("example.org").unwrap())
                .unwrap()
                .0,
            ServedZone::load(&child.0, &name_from_str("sub.example.org").unwrap())
                .unwrap()
                .0,
        ]);
        let r = set
            .answer(
                &name_from_str("WWW.Sub.Example.org").unwrap(),
                Rtype::A,
                Class::IN,
                false,
                false,
            )
            .unwrap();
        assert_eq!(r.answer[0].data().to_string(), "192.0.2.99");
        assert!(
            set.answer(
                &name_from_str("example.net").unwrap(),
                Rtype::A,
                Class::IN,
                false,
                false
            )
            .is_none()
        );
        let r = set
            .answer(
                &name_from_str("x.example.org").unwrap(),
                Rtype::A,
                Class::IN,
                false,
                false,
            )
            .unwrap();
        assert_eq!(r.rcode, OptRcode::NXDOMAIN);
    }
}
