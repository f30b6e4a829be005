//! Per-file records folded into subseries. Each file leaves one entry in
//! one map, its SOP Instance UID's hash → its subseries: that counts
//! distinct instances and resolves references to series, at a fixed size
//! per file whatever the length of its strings. The file with the smallest
//! path is kept as the subseries' representative.

use std::collections::hash_map::{DefaultHasher, Entry as MapEntry};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::OsStrExt;

use crate::fields::index_of;
use crate::record::Record;

/// (patient_ID, study, series, subseries): the record key, in sort order.
pub type Key = (String, String, String, String);

pub struct Group {
    pub key: Key,
    /// Distinct SOP Instance UIDs, plus files without one (each of those
    /// counts as its own instance).
    instances: u64,
    pub representative: Record,
    pub path: OsString,
}

impl Group {
    pub fn instances(&self) -> u64 {
        self.instances
    }
}

#[derive(Default)]
pub struct Aggregator {
    groups: Vec<Group>,
    /// Hash of the key → the groups with that hash (one, but for a
    /// collision): found from the record's borrowed strings, no copies.
    index: HashMap<u64, Vec<u32>>,
    /// SOP Instance UID hash → the group holding it. The same instance
    /// filed in several subseries keeps the one of the smallest series UID
    /// here (whatever the reading order) and the others in `elsewhere`.
    sop_group: HashMap<u64, u32>,
    elsewhere: HashSet<(u64, u32)>,
    /// Files whose SOP Instance UID was already seen in their subseries.
    pub duplicates: u64,
    fields: FieldIndex,
}

/// Where the fields the aggregator reads sit in the table.
struct FieldIndex {
    key: [usize; 4],
    sop: usize,
    modality: usize,
    frame: usize,
    refs: [usize; 3],
}

impl Default for FieldIndex {
    fn default() -> Self {
        let f = |n| index_of(n).unwrap_or(0);
        FieldIndex {
            key: [f("patient_ID"), f("study"), f("series"), f("subseries")],
            sop: f("instance_uid"),
            modality: f("modality"),
            frame: f("reference_frame"),
            refs: [f("reference_ct"), f("reference_rs"), f("reference_pl")],
        }
    }
}

/// The references of one subseries resolved to series of the index.
#[derive(Default)]
pub struct Links {
    pub series: Vec<String>,
    pub modalities: Vec<String>,
}

fn sop_hash(uid: &str) -> u64 {
    // DefaultHasher::new() has fixed keys: the same UID hashes alike in
    // every run, and 64 bits make a collision vanishingly unlikely.
    let mut h = DefaultHasher::new();
    uid.hash(&mut h);
    h.finish()
}

impl Aggregator {
    fn find(&self, key: [&str; 4]) -> (u64, Option<u32>) {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let h = h.finish();
        let found = self.index.get(&h).and_then(|ids| {
            ids.iter().copied().find(|&id| {
                let k = &self.groups[id as usize].key;
                [k.0.as_str(), k.1.as_str(), k.2.as_str(), k.3.as_str()] == key
            })
        });
        (h, found)
    }

    pub fn add(&mut self, record: Record, path: OsString) {
        let [p, st, se, sub] = self.fields.key;
        let (key_hash, found) = self.find([
            record.get(p),
            record.get(st),
            record.get(se),
            record.get(sub),
        ]);
        let sop = record.get(self.fields.sop);
        let hashed = (!sop.is_empty()).then(|| sop_hash(sop));
        let id = match found {
            Some(id) => {
                let g = &mut self.groups[id as usize];
                if path.as_bytes() < g.path.as_bytes() {
                    g.representative = record;
                    g.path = path;
                }
                id
            }
            None => {
                let id = self.groups.len() as u32;
                self.index.entry(key_hash).or_default().push(id);
                let key = (
                    record.get(p).to_owned(),
                    record.get(st).to_owned(),
                    record.get(se).to_owned(),
                    record.get(sub).to_owned(),
                );
                self.groups.push(Group {
                    key,
                    instances: 0,
                    representative: record,
                    path,
                });
                id
            }
        };
        let Some(h) = hashed else {
            self.groups[id as usize].instances += 1;
            return;
        };
        let new = match self.sop_group.entry(h) {
            MapEntry::Vacant(v) => {
                v.insert(id);
                true
            }
            MapEntry::Occupied(mut o) => {
                let held = *o.get();
                if held == id {
                    false
                } else if self.groups[id as usize].key.2 < self.groups[held as usize].key.2 {
                    o.insert(id);
                    self.elsewhere.insert((h, held));
                    !self.elsewhere.remove(&(h, id))
                } else {
                    self.elsewhere.insert((h, id))
                }
            }
        };
        if new {
            self.groups[id as usize].instances += 1;
        } else {
            self.duplicates += 1;
        }
    }

    /// The subseries in the dictionary's order, each with its references
    /// resolved, and the number of references that resolve to nothing in
    /// the index (they point outside the archive).
    pub fn sorted(&self) -> (Vec<(&Group, Links)>, u64) {
        let f = &self.fields;
        let mut sorted: Vec<&Group> = self.groups.iter().collect();
        sorted.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        // A series' modality is its first subseries' (in output order).
        let mut modality: HashMap<&str, &str> = HashMap::new();
        // PET and NM without explicit references go with the CT that shares
        // their frame of reference in the same study.
        let mut ct_by_frame: HashMap<(&str, &str), BTreeSet<&str>> = HashMap::new();
        for g in &sorted {
            let m = g.representative.get(f.modality);
            modality.entry(g.key.2.as_str()).or_insert(m);
            let frame = g.representative.get(f.frame);
            if m == "CT" && !frame.is_empty() {
                ct_by_frame
                    .entry((g.key.1.as_str(), frame))
                    .or_default()
                    .insert(g.key.2.as_str());
            }
        }
        let mut unresolved = 0;
        let out = sorted
            .into_iter()
            .map(|g| {
                let rec = &g.representative;
                let mut found: BTreeSet<&str> = BTreeSet::new();
                let raw = f.refs.map(|i| rec.get(i));
                for (i, r) in raw.iter().enumerate() {
                    if r.is_empty() {
                        continue;
                    }
                    // reference_ct holds a series UID for RTSTRUCT and SEG.
                    if i == 0 && modality.contains_key(r) {
                        found.insert(r);
                    } else if let Some(&id) = self.sop_group.get(&sop_hash(r)) {
                        found.insert(&self.groups[id as usize].key.2);
                    } else {
                        unresolved += 1;
                    }
                }
                let m = rec.get(f.modality);
                if raw.iter().all(|r| r.is_empty()) && (m == "PT" || m == "NM") {
                    if let Some(cts) = ct_by_frame.get(&(g.key.1.as_str(), rec.get(f.frame))) {
                        found.extend(cts);
                    }
                }
                // A slice that points at another slice of its own series
                // says nothing about how series relate.
                found.remove(g.key.2.as_str());
                let links = Links {
                    modalities: found
                        .iter()
                        .map(|s| modality.get(s).copied().unwrap_or("").to_owned())
                        .collect(),
                    series: found.into_iter().map(str::to_owned).collect(),
                };
                (g, links)
            })
            .collect();
        (out, unresolved)
    }

    pub fn group(&self, key: &Key) -> Option<&Group> {
        let (_, found) = self.find([
            key.0.as_str(),
            key.1.as_str(),
            key.2.as_str(),
            key.3.as_str(),
        ]);
        found.map(|id| &self.groups[id as usize])
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}
