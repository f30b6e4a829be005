//! Per-file records folded into subseries: distinct SOP Instance UIDs
//! counted by hash (a fixed 8 bytes per file, not its strings), the file
//! with the smallest path kept as the representative.

use std::collections::hash_map::{DefaultHasher, Entry as MapEntry};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::OsStrExt;

use crate::fields::index_of;
use crate::record::Record;

/// (patient_ID, study, series, subseries): the record key, in sort order.
pub type Key = (String, String, String, String);

pub struct Group {
    sops: HashSet<u64>,
    /// Files without a SOPInstanceUID: each counts as its own instance.
    anonymous: u64,
    pub representative: Record,
    pub path: OsString,
}

impl Group {
    pub fn instances(&self) -> u64 {
        self.sops.len() as u64 + self.anonymous
    }
}

pub struct Aggregator {
    groups: HashMap<Key, Group>,
    /// Files whose SOP Instance UID was already seen in their subseries.
    pub duplicates: u64,
    key_fields: [usize; 4],
    sop_field: usize,
}

impl Default for Aggregator {
    fn default() -> Self {
        let f = |n| index_of(n).unwrap_or(0);
        Aggregator {
            groups: HashMap::new(),
            duplicates: 0,
            key_fields: [f("patient_ID"), f("study"), f("series"), f("subseries")],
            sop_field: f("instance_uid"),
        }
    }
}

fn sop_hash(uid: &str) -> u64 {
    // DefaultHasher::new() has fixed keys: the same UID hashes alike in
    // every worker, and 64 bits make a collision within one subseries
    // vanishingly unlikely.
    let mut h = DefaultHasher::new();
    uid.hash(&mut h);
    h.finish()
}

impl Aggregator {
    pub fn add(&mut self, record: Record, path: OsString) {
        let [p, st, se, sub] = self.key_fields;
        let key = (record.get(p).to_owned(), record.get(st).to_owned(), record.get(se).to_owned(), record.get(sub).to_owned());
        let sop = record.get(self.sop_field);
        let hashed = (!sop.is_empty()).then(|| sop_hash(sop));
        match self.groups.entry(key) {
            MapEntry::Vacant(v) => {
                let mut sops = HashSet::new();
                let anonymous = match hashed {
                    Some(h) => {
                        sops.insert(h);
                        0
                    }
                    None => 1,
                };
                v.insert(Group { sops, anonymous, representative: record, path });
            }
            MapEntry::Occupied(mut o) => {
                let g = o.get_mut();
                match hashed {
                    Some(h) => {
                        if !g.sops.insert(h) {
                            self.duplicates += 1;
                        }
                    }
                    None => g.anonymous += 1,
                }
                if path.as_bytes() < g.path.as_bytes() {
                    g.representative = record;
                    g.path = path;
                }
            }
        }
    }

    /// The subseries in the dictionary's order.
    pub fn sorted(&self) -> Vec<(&Key, &Group)> {
        let mut v: Vec<_> = self.groups.iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}
