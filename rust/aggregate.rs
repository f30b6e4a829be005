//! Per-file records folded into subseries: distinct SOP Instance UIDs
//! counted by hash (a fixed 8 bytes per file, not its strings), the file
//! with the smallest path kept as the representative, and each file's SOP
//! Instance UID hash mapped to its series so that references resolve.

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
    /// SOP Instance UID hash → index of its series in `series`.
    sop_series: HashMap<u64, u32>,
    series_index: HashMap<String, u32>,
    series: Vec<String>,
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

/// The references of one subseries resolved to series of the index.
#[derive(Default)]
pub struct Links {
    pub series: Vec<String>,
    pub modalities: Vec<String>,
}

impl Default for Aggregator {
    fn default() -> Self {
        let f = |n| index_of(n).unwrap_or(0);
        Aggregator {
            groups: HashMap::new(),
            duplicates: 0,
            sop_series: HashMap::new(),
            series_index: HashMap::new(),
            series: Vec::new(),
            fields: FieldIndex {
                key: [f("patient_ID"), f("study"), f("series"), f("subseries")],
                sop: f("instance_uid"),
                modality: f("modality"),
                frame: f("reference_frame"),
                refs: [f("reference_ct"), f("reference_rs"), f("reference_pl")],
            },
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
        let [p, st, se, sub] = self.fields.key;
        let key = (record.get(p).to_owned(), record.get(st).to_owned(), record.get(se).to_owned(), record.get(sub).to_owned());
        let sop = record.get(self.fields.sop);
        let hashed = (!sop.is_empty()).then(|| sop_hash(sop));
        if let Some(h) = hashed {
            let next = self.series.len() as u32;
            let id = *self.series_index.entry(key.2.clone()).or_insert(next);
            if id == next {
                self.series.push(key.2.clone());
            }
            // The same instance filed in two series: keep the smaller series
            // UID, so that the answer does not depend on reading order.
            let series = &self.series;
            self.sop_series
                .entry(h)
                .and_modify(|old| {
                    if series[id as usize] < series[*old as usize] {
                        *old = id;
                    }
                })
                .or_insert(id);
        }
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

    /// The subseries in the dictionary's order, each with its references
    /// resolved, and the number of references that resolve to nothing in
    /// the index (they point outside the archive).
    pub fn sorted(&self) -> (Vec<(&Key, &Group, Links)>, u64) {
        let f = &self.fields;
        let mut sorted: Vec<(&Key, &Group)> = self.groups.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        // A series' modality is its first subseries' (in output order).
        let mut modality: HashMap<&str, &str> = HashMap::new();
        // PET and NM without explicit references go with the CT that shares
        // their frame of reference in the same study.
        let mut ct_by_frame: HashMap<(&str, &str), BTreeSet<&str>> = HashMap::new();
        for &(key, g) in &sorted {
            let m = g.representative.get(f.modality);
            modality.entry(key.2.as_str()).or_insert(m);
            let frame = g.representative.get(f.frame);
            if m == "CT" && !frame.is_empty() {
                ct_by_frame.entry((key.1.as_str(), frame)).or_default().insert(key.2.as_str());
            }
        }
        let mut unresolved = 0;
        let out: Vec<_> = sorted
            .into_iter()
            .map(|(key, g)| {
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
                    } else if let Some(&id) = self.sop_series.get(&sop_hash(r)) {
                        found.insert(&self.series[id as usize]);
                    } else {
                        unresolved += 1;
                    }
                }
                let m = rec.get(f.modality);
                if raw.iter().all(|r| r.is_empty()) && (m == "PT" || m == "NM") {
                    if let Some(cts) = ct_by_frame.get(&(key.1.as_str(), rec.get(f.frame))) {
                        found.extend(cts);
                    }
                }
                // A slice that points at another slice of its own series
                // says nothing about how series relate.
                found.remove(key.2.as_str());
                let links = Links {
                    modalities: found.iter().map(|s| modality.get(s).copied().unwrap_or("").to_owned()).collect(),
                    series: found.into_iter().map(str::to_owned).collect(),
                };
                (key, g, links)
            })
            .collect();
        (out, unresolved)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}
