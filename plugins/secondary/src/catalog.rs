//! Catalog zones (RFC 9432): a secondary zone marked `catalog` lists member
//! zones, which become secondary zones of their own, from the catalog's
//! primaries, added and removed as new versions of the catalog arrive.
//!
//! - The catalog is read only when `version.CATALOG` holds exactly one TXT
//!   record "2" (§4.2); any other version leaves the members as they were.
//! - Members are the PTR records at `UNIQUE-ID.zones.CATALOG` (§4.1); a
//!   member node with more than one PTR is ignored, as is a zone listed at
//!   more than one member node of the same catalog.
//! - A member whose unique ID changes is reset (§5.6): its copy is deleted
//!   and it is transferred anew.
//! - A zone that another catalog already owns stays with that catalog,
//!   unless that catalog's `coo` property for it names this catalog (change
//!   of ownership, §4.4.1, §5.4): then it moves, keeping its data when the
//!   unique ID is the same and reset otherwise.
//! - `group` properties (§4.4.2) are read and logged; they select nothing
//!   here, since every member takes the catalog's settings.
//! - A removed member (§5.2) stops serving and its zone file is deleted.
//! - The member list needs no file of its own: the catalog zone is saved
//!   like any secondary zone, and at start-up its members are read from
//!   that copy and served from theirs before any primary answers.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use oxidns_server::proto::domain::base::ToName;
use oxidns_server::proto::{Name, RecordData, lowercase, name_from_str, name_text};
use oxidns_zone::Zone;

use super::{Secondary, Slot};

/// The catalog schema version we read (RFC 9432 §4.2).
const VERSION: &[u8] = b"2";

/// A member as one version of a catalog lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The member node, `UNIQUE-ID.zones.CATALOG` (lower case).
    pub node: Name,
    /// The catalog this member may move to (`coo`, §4.4.1).
    pub coo: Option<Name>,
    /// The `group` property's values (§4.4.2).
    pub groups: Vec<String>,
}

/// The members of one catalog version, by zone (lower case).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Members(pub BTreeMap<Name, Entry>);

/// Reads a catalog zone; an error when its version is not one we read.
pub(crate) fn members(catalog: &Zone) -> Result<Members, String> {
    let apex = lowercase(catalog.apex());
    let version = name_from_str(&format!("version.{}", name_text(&apex)))?;
    let zones = name_from_str(&format!("zones.{}", name_text(&apex)))?;
    let mut versions = Vec::new();
    // PTRs by member node; properties by member node.
    let mut ptrs: BTreeMap<Name, Vec<Name>> = BTreeMap::new();
    let mut coo: HashMap<Name, Vec<Name>> = HashMap::new();
    let mut groups: HashMap<Name, Vec<String>> = HashMap::new();
    for record in catalog.records() {
        let owner = lowercase(record.owner());
        if owner == version {
            if let RecordData::Txt(txt) = record.data() {
                versions.push(txt.text::<Vec<u8>>());
            }
            continue;
        }
        if !owner.ends_with(&zones) || owner == zones {
            continue;
        }
        let depth = owner.label_count() - zones.label_count();
        match (depth, record.data()) {
            (1, RecordData::Ptr(ptr)) => ptrs
                .entry(owner)
                .or_default()
                .push(lowercase(&ptr.ptrdname().to_name())),
            (2, data) => {
                let property = owner.first().to_string().to_ascii_lowercase();
                let Some(node) = parent(&owner) else { continue };
                match (property.as_str(), data) {
                    ("coo", RecordData::Ptr(ptr)) => coo
                        .entry(node)
                        .or_default()
                        .push(lowercase(&ptr.ptrdname().to_name())),
                    ("group", RecordData::Txt(txt)) => groups
                        .entry(node)
                        .or_default()
                        .push(String::from_utf8_lossy(&txt.text::<Vec<u8>>()).into_owned()),
                    // Other properties (ext, custom ones) mean nothing to us (§3).
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if versions.len() != 1 || versions[0] != VERSION {
        let found: Vec<String> = versions
            .iter()
            .map(|v| format!("\"{}\"", String::from_utf8_lossy(v)))
            .collect();
        return Err(format!(
            "catalog {} has version [{}]; only a single \"2\" (RFC 9432) is read",
            name_text(&apex),
            found.join(", ")
        ));
    }
    let mut listed: BTreeMap<Name, Vec<Name>> = BTreeMap::new();
    for (node, targets) in ptrs {
        if targets.len() != 1 {
            // §4.1: a member node holds exactly one PTR.
            tracing::warn!(target: "plugin/secondary", "catalog {}: ignoring member node {} with {} PTR records", name_text(&apex), name_text(&node), targets.len());
            continue;
        }
        listed
            .entry(targets[0].clone())
            .or_default()
            .push(node.clone());
    }
    let mut members = BTreeMap::new();
    for (zone, nodes) in listed {
        if nodes.len() != 1 {
            tracing::warn!(target: "plugin/secondary", "catalog {}: ignoring {} listed at {} member nodes", name_text(&apex), name_text(&zone), nodes.len());
            continue;
        }
        let node = nodes.into_iter().next().expect("one node");
        // §4.4.1: more than one coo is as good as none.
        let coo = coo
            .remove(&node)
            .filter(|targets| targets.len() == 1)
            .and_then(|mut targets| targets.pop());
        let groups = groups.remove(&node).unwrap_or_default();
        members.insert(zone, Entry { node, coo, groups });
    }
    Ok(Members(members))
}

fn parent(name: &Name) -> Option<Name> {
    let text = name_text(name);
    let (_, rest) = text.split_once('.')?;
    name_from_str(rest).ok()
}

/// Which catalog serves a member zone, under which member node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub catalog: Name,
    pub node: Name,
}

/// What to do to the served members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Start serving a new member.
    Add { zone: Name, owner: Owner },
    /// Stop serving a member and delete its copy.
    Remove { zone: Name },
    /// Delete the member's copy and transfer it anew (§5.6).
    Reset { zone: Name, owner: Owner },
    /// The member moves to another catalog with its data (§5.4).
    Move { zone: Name, owner: Owner },
}

/// The members every catalog's latest readable version lists, and who owns
/// which.
#[derive(Default)]
pub(crate) struct Catalogs {
    /// The last version of each catalog that could be read.
    pub lists: BTreeMap<Name, Members>,
    /// The member zones served, by zone.
    pub owners: BTreeMap<Name, Owner>,
}

impl Catalogs {
    /// The changes that bring the served members in line with every
    /// catalog's list; `taken` says which zones are served otherwise (and so
    /// cannot be members). Updates `owners` as if they were applied.
    pub(crate) fn plan(&mut self, taken: impl Fn(&Name) -> bool) -> Vec<Change> {
        let mut changes = Vec::new();
        // Gone from their catalog's list (or the catalog is gone): removed.
        let gone: Vec<Name> = self
            .owners
            .iter()
            .filter(|(zone, owner)| {
                self.lists
                    .get(&owner.catalog)
                    .is_none_or(|list| !list.0.contains_key(*zone))
            })
            .map(|(zone, _)| zone.clone())
            .collect();
        for zone in gone {
            self.owners.remove(&zone);
            changes.push(Change::Remove { zone });
        }
        for (catalog, list) in &self.lists {
            for (zone, entry) in &list.0 {
                let owner = Owner {
                    catalog: catalog.clone(),
                    node: entry.node.clone(),
                };
                match self.owners.get(zone) {
                    None if taken(zone) || self.lists.contains_key(zone) => {
                        tracing::warn!(target: "plugin/secondary", "catalog {}: member {} is served otherwise; ignored", name_text(catalog), name_text(zone));
                    }
                    None => {
                        changes.push(Change::Add {
                            zone: zone.clone(),
                            owner: owner.clone(),
                        });
                        self.owners.insert(zone.clone(), owner);
                    }
                    Some(current) if current.catalog == *catalog => {
                        if current.node != entry.node {
                            changes.push(Change::Reset {
                                zone: zone.clone(),
                                owner: owner.clone(),
                            });
                            self.owners.insert(zone.clone(), owner);
                        }
                    }
                    Some(current) => {
                        // Owned by another catalog: only its coo lets go (§4.4.1).
                        let released = self
                            .lists
                            .get(&current.catalog)
                            .and_then(|list| list.0.get(zone))
                            .is_some_and(|theirs| theirs.coo.as_ref() == Some(catalog));
                        if !released {
                            tracing::debug!(target: "plugin/secondary", "catalog {}: member {} belongs to catalog {}", name_text(catalog), name_text(zone), name_text(&current.catalog));
                            continue;
                        }
                        let same_id = current.node.first() == entry.node.first();
                        changes.push(if same_id {
                            Change::Move {
                                zone: zone.clone(),
                                owner: owner.clone(),
                            }
                        } else {
                            Change::Reset {
                                zone: zone.clone(),
                                owner: owner.clone(),
                            }
                        });
                        self.owners.insert(zone.clone(), owner);
                    }
                }
            }
        }
        changes
    }
}

impl Secondary {
    /// Reads the catalog's current version and brings the served members
    /// in line with it (blocking: loads and deletes zone files).
    pub(crate) fn update_catalog(&self, catalog: &Slot) {
        let Some(zone) = catalog.current() else {
            return;
        };
        let list = match members(&zone) {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(target: "plugin/secondary", "{e}; its members are left as they are");
                return;
            }
        };
        for (member, entry) in &list.0 {
            if !entry.groups.is_empty() {
                tracing::debug!(target: "plugin/secondary", "catalog {}: member {} in groups {:?} (groups select no settings here)", catalog.zone(), name_text(member), entry.groups);
            }
        }
        // Held until the changes are applied: one catalog update at a time.
        let mut catalogs = self.catalogs.lock().unwrap_or_else(|e| e.into_inner());
        catalogs.lists.insert(lowercase(&catalog.apex), list);
        let changes = catalogs.plan(|zone| self.configured(zone));
        if changes.is_empty() {
            return;
        }
        let mut zones = HashMap::clone(&self.zones.load());
        for change in changes {
            match change {
                Change::Add { zone, owner } => {
                    let slot = Arc::new(self.member(&zone, &owner));
                    tracing::info!(target: "plugin/secondary", "catalog {}: added member {}", name_text(&owner.catalog), slot.zone());
                    self.start(&slot);
                    zones.insert(zone, slot);
                }
                Change::Remove { zone } => {
                    if let Some(slot) = zones.remove(&zone) {
                        slot.remove();
                        tracing::info!(target: "plugin/secondary", "catalog: removed member {} and deleted {}", slot.zone(), slot.path.display());
                    }
                }
                Change::Reset { zone, owner } => {
                    if let Some(slot) = zones.remove(&zone) {
                        slot.remove();
                    }
                    let slot = Arc::new(self.member(&zone, &owner));
                    tracing::info!(target: "plugin/secondary", "catalog {}: member {} reset (new unique ID {}): transferring it anew", name_text(&owner.catalog), slot.zone(), name_text(&owner.node));
                    self.start(&slot);
                    zones.insert(zone, slot);
                }
                Change::Move { zone, owner } => {
                    // The data stays; the primaries and folder become the new catalog's.
                    let path = self.member_path(&zone, &owner);
                    if let Some(old) = zones.remove(&zone) {
                        old.retire();
                        if old.path != path {
                            let moved = path
                                .parent()
                                .map_or(Ok(()), std::fs::create_dir_all)
                                .and_then(|()| std::fs::rename(&old.path, &path));
                            if let Err(e) = moved {
                                tracing::warn!(target: "plugin/secondary", "cannot move {} to {}: {e}; transferring it anew", old.path.display(), path.display());
                            }
                        }
                    }
                    let slot = Arc::new(self.member(&zone, &owner));
                    tracing::info!(target: "plugin/secondary", "member {} moved to catalog {} (change of ownership)", slot.zone(), name_text(&owner.catalog));
                    self.start(&slot);
                    zones.insert(zone, slot);
                }
            }
        }
        self.zones.store(Arc::new(zones));
        drop(catalogs);
    }

    /// A new member zone's slot, with the catalog's primaries and TSIG key,
    /// registered as a zone source.
    fn member(&self, zone: &Name, owner: &Owner) -> Slot {
        let catalog = self.catalog_slot(&owner.catalog);
        let primaries = catalog.map(|c| c.primaries.clone()).unwrap_or_default();
        let mut slot = Slot::new(zone.clone(), primaries, self.member_path(zone, owner));
        slot.key = catalog.and_then(|c| c.key.clone());
        if let Some(catalog) = catalog {
            slot.max_records = catalog.max_records;
        }
        self.sources.register(slot.set.clone());
        slot
    }

    /// A member's zone file: in the catalog's `directory`, or else in a
    /// folder named after the member, as for configured zones.
    fn member_path(&self, zone: &Name, owner: &Owner) -> PathBuf {
        let folder = super::zone_file_name(zone);
        let dir = self
            .catalog_slot(&owner.catalog)
            .and_then(|c| c.member_directory.clone())
            .unwrap_or_else(|| self.root.join(&folder));
        dir.join(format!("db.{folder}"))
    }

    fn catalog_slot(&self, apex: &Name) -> Option<&Arc<Slot>> {
        self.configured_slots
            .iter()
            .find(|slot| slot.catalog && lowercase(&slot.apex) == *apex)
    }

    fn configured(&self, zone: &Name) -> bool {
        self.configured_slots
            .iter()
            .any(|slot| lowercase(&slot.apex) == *zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn zone(apex: &str, body: &str) -> Zone {
        let text = format!(
            "$ORIGIN {apex}.\n$TTL 0\n@ SOA invalid. invalid. 1 60 60 3600 0\n@ NS invalid.\n{body}"
        );
        let origin = name_from_str(apex).unwrap();
        let records =
            oxidns_zone::zonefile::parse_zone_text(&text, "catalog", &origin).expect("a zone file");
        Zone::build(&origin, records).expect("a valid zone").0
    }

    fn name(text: &str) -> Name {
        name_from_str(text).unwrap()
    }

    fn listed(members: &Members) -> Vec<String> {
        members.0.keys().map(name_text).collect()
    }

    #[test]
    fn members_are_the_ptr_records_under_zones() {
        let catalog = zone(
            "catalog.invalid",
            "version TXT \"2\"\nid1.zones PTR a.example.\nid2.zones PTR B.Example.\n",
        );
        let members = members(&catalog).unwrap();
        assert_eq!(listed(&members), ["a.example.", "b.example."]);
        assert_eq!(
            members.0[&name("b.example")].node,
            name("id2.zones.catalog.invalid")
        );
    }

    #[test]
    fn a_catalog_without_version_2_is_not_read() {
        for version in [
            "",
            "version TXT \"1\"\n",
            "version TXT \"2\"\nversion TXT \"3\"\n",
        ] {
            let catalog = zone(
                "catalog.invalid",
                &format!("{version}id1.zones PTR a.example.\n"),
            );
            assert!(members(&catalog).is_err(), "{version}");
        }
    }

    #[test]
    fn a_member_node_with_two_ptrs_and_a_zone_listed_twice_are_ignored() {
        let catalog = zone(
            "catalog.invalid",
            "version TXT \"2\"\nid1.zones PTR a.example.\nid1.zones PTR b.example.\n\
             id2.zones PTR c.example.\nid3.zones PTR c.example.\nid4.zones PTR d.example.\n",
        );
        assert_eq!(listed(&members(&catalog).unwrap()), ["d.example."]);
    }

    #[test]
    fn coo_and_group_properties_are_read() {
        let catalog = zone(
            "catalog.invalid",
            "version TXT \"2\"\nid1.zones PTR a.example.\ncoo.id1.zones PTR other.invalid.\n\
             group.id1.zones TXT \"blue\"\next.id1.zones TXT \"x\"\n",
        );
        let members = members(&catalog).unwrap();
        let entry = &members.0[&name("a.example")];
        assert_eq!(entry.coo, Some(name("other.invalid")));
        assert_eq!(entry.groups, ["blue"]);
    }

    fn list(catalog: &str, entries: &[(&str, &str, Option<&str>)]) -> Members {
        Members(
            entries
                .iter()
                .map(|(zone, id, coo)| {
                    (
                        name(zone),
                        Entry {
                            node: name(&format!("{id}.zones.{catalog}")),
                            coo: coo.map(name),
                            groups: Vec::new(),
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn members_are_added_removed_and_reset_on_a_new_unique_id() {
        let mut catalogs = Catalogs::default();
        let cat = name("cat.invalid");
        catalogs.lists.insert(
            cat.clone(),
            list(
                "cat.invalid",
                &[("a.example", "1", None), ("b.example", "2", None)],
            ),
        );
        let changes = catalogs.plan(|_| false);
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| matches!(c, Change::Add { .. })));
        catalogs.lists.insert(
            cat.clone(),
            list("cat.invalid", &[("b.example", "3", None)]),
        );
        let changes = catalogs.plan(|_| false);
        assert_eq!(
            changes,
            [
                Change::Remove {
                    zone: name("a.example")
                },
                Change::Reset {
                    zone: name("b.example"),
                    owner: Owner {
                        catalog: cat.clone(),
                        node: name("3.zones.cat.invalid")
                    }
                }
            ]
        );
        assert!(catalogs.plan(|_| false).is_empty());
    }

    #[test]
    fn a_zone_served_otherwise_is_not_a_member() {
        let mut catalogs = Catalogs::default();
        catalogs.lists.insert(
            name("cat.invalid"),
            list("cat.invalid", &[("a.example", "1", None)]),
        );
        assert!(catalogs.plan(|zone| *zone == name("a.example")).is_empty());
    }

    #[test]
    fn a_member_moves_only_when_its_owner_names_the_new_catalog_in_coo() {
        let mut catalogs = Catalogs::default();
        let (old, new) = (name("old.invalid"), name("new.invalid"));
        catalogs.lists.insert(
            old.clone(),
            list("old.invalid", &[("a.example", "1", None)]),
        );
        catalogs.plan(|_| false);
        // Listed by a second catalog without coo: stays.
        catalogs.lists.insert(
            new.clone(),
            list("new.invalid", &[("a.example", "1", None)]),
        );
        assert!(catalogs.plan(|_| false).is_empty());
        assert_eq!(catalogs.owners[&name("a.example")].catalog, old);
        // The owner hands it over: it moves with its data (same unique ID).
        catalogs.lists.insert(
            old.clone(),
            list("old.invalid", &[("a.example", "1", Some("new.invalid"))]),
        );
        assert_eq!(
            catalogs.plan(|_| false),
            [Change::Move {
                zone: name("a.example"),
                owner: Owner {
                    catalog: new.clone(),
                    node: name("1.zones.new.invalid")
                }
            }]
        );
        // The old catalog dropping it now changes nothing.
        catalogs.lists.insert(old.clone(), Members::default());
        assert!(catalogs.plan(|_| false).is_empty());
        assert_eq!(catalogs.owners[&name("a.example")].catalog, new);
    }
}
