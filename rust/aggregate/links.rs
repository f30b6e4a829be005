//! References of the representatives resolved to series of the index.
//!
//! Built when the output is asked for, from what the representatives
//! reference: the referenced SOPs, series and frames are gathered first,
//! then one pass over the groups (and their SOP ids) finds them. Nothing
//! per file is kept for references while adding.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::blob::{Text, View, FRAME, MODALITY, REFERENCES};
use super::sops::Sop;
use super::{Group, Rep};

/// The references of one subseries resolved to series of the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Links {
    pub series: Vec<String>,
    pub modalities: Vec<String>,
}

/// The fields of a representative that references read.
struct Refs<'a> {
    study: Text<'a>,
    series: Text<'a>,
    modality: Text<'a>,
    frame: Text<'a>,
    refs: [Text<'a>; 3],
}

impl<'a> Refs<'a> {
    fn of(blob: &'a [u8]) -> Option<Refs<'a>> {
        let v = View::of(blob)?;
        let empty = Text::Plain(&[]);
        let mut r = Refs {
            study: v.key[1],
            series: v.key[2],
            modality: empty,
            frame: empty,
            refs: [empty; 3],
        };
        for (field, raw) in v.values() {
            let slot = match field {
                Some(MODALITY) => &mut r.modality,
                Some(FRAME) => &mut r.frame,
                Some(i) => match REFERENCES.iter().position(|&x| x == i) {
                    Some(k) => &mut r.refs[k],
                    None => continue,
                },
                None => break,
            };
            *slot = raw.text_or_empty();
        }
        Some(r)
    }

    fn none(&self) -> bool {
        self.refs.iter().all(Text::is_empty)
    }

    /// PET and NM without explicit references go with the CT that shares
    /// their frame of reference in the same study.
    fn by_frame(&self) -> bool {
        self.none()
            && (self.modality.is(b"PT") || self.modality.is(b"NM"))
            && !self.frame.is_empty()
    }
}

fn known(g: &Group) -> Option<Refs<'_>> {
    match &g.rep {
        Rep::Known(b) => Refs::of(b),
        Rep::Open(_) => None,
    }
}

/// What the references of the index resolve to.
#[derive(Default)]
pub struct Resolver {
    /// reference_ct values that are series of the index (RTSTRUCT and SEG
    /// name a series there).
    series: HashSet<String>,
    /// Referenced SOPs → the smallest series UID holding them.
    sops: HashMap<Sop, String>,
    /// Study → frame of reference → CT series, for PET and NM.
    frames: HashMap<String, HashMap<String, BTreeSet<String>>>,
    /// A series' modality: its first subseries' (in output order), for the
    /// series found above.
    modality: HashMap<String, String>,
}

impl Resolver {
    /// The tables for `groups`, and the count of references that resolve
    /// to nothing in the index; `order` is the output order.
    pub fn build(groups: &[Group], order: &[usize]) -> (Resolver, u64) {
        let mut r = Resolver::default();
        let mut want_series: HashSet<String> = HashSet::new();
        let mut want_sops: HashSet<Sop> = HashSet::new();
        let mut want_frames: HashMap<String, HashSet<String>> = HashMap::new();
        for x in groups.iter().filter_map(known) {
            for (i, t) in x.refs.iter().enumerate() {
                if t.is_empty() {
                    continue;
                }
                let s = t.to_string_lossy();
                want_sops.insert(Sop::of(s.as_bytes()));
                if i == 0 {
                    want_series.insert(s);
                }
            }
            if x.by_frame() {
                want_frames
                    .entry(x.study.to_string_lossy())
                    .or_default()
                    .insert(x.frame.to_string_lossy());
            }
        }
        if want_sops.is_empty() && want_frames.is_empty() {
            return (r, 0);
        }
        for g in groups {
            let Some(x) = known(g) else { continue };
            let series = x.series.to_string_lossy();
            if want_series.contains(&series) {
                r.series.insert(series.clone());
            }
            for (sop, _) in g.sops.iter().filter(|(s, _)| want_sops.contains(s)) {
                let held = r.sops.entry(sop).or_insert_with(|| series.clone());
                if series < *held {
                    held.clone_from(&series);
                }
            }
            if x.modality.is(b"CT") && !x.frame.is_empty() {
                let study = x.study.to_string_lossy();
                let frame = x.frame.to_string_lossy();
                if want_frames.get(&study).is_some_and(|f| f.contains(&frame)) {
                    r.frames
                        .entry(study)
                        .or_default()
                        .entry(frame)
                        .or_default()
                        .insert(series);
                }
            }
        }
        let mut need: HashSet<&str> = r.series.iter().map(String::as_str).collect();
        need.extend(r.sops.values().map(String::as_str));
        need.extend(
            r.frames
                .values()
                .flat_map(|m| m.values().flatten().map(String::as_str)),
        );
        let mut modality = HashMap::new();
        for g in order.iter().filter_map(|&i| groups.get(i)) {
            let Some(x) = known(g) else { continue };
            let series = x.series.to_string_lossy();
            if need.contains(series.as_str()) && !modality.contains_key(&series) {
                modality.insert(series, x.modality.to_string_lossy());
            }
        }
        r.modality = modality;
        let mut unresolved = 0;
        for x in groups.iter().filter_map(known) {
            for (i, t) in x.refs.iter().enumerate() {
                if !t.is_empty() && r.resolve(i, &t.to_string_lossy()).is_none() {
                    unresolved += 1;
                }
            }
        }
        (r, unresolved)
    }

    /// The series reference `i` (0: reference_ct, 1: _rs, 2: _pl) names.
    fn resolve(&self, i: usize, value: &str) -> Option<&str> {
        if i == 0 {
            if let Some(s) = self.series.get(value) {
                return Some(s);
            }
        }
        self.sops
            .get(&Sop::of(value.as_bytes()))
            .map(String::as_str)
    }

    /// The resolved references of the representative `blob`.
    pub fn links(&self, blob: &[u8]) -> Links {
        let Some(x) = Refs::of(blob) else {
            return Links::default();
        };
        let mut found: BTreeSet<&str> = BTreeSet::new();
        for (i, t) in x.refs.iter().enumerate() {
            if !t.is_empty() {
                found.extend(self.resolve(i, &t.to_string_lossy()));
            }
        }
        if x.by_frame() {
            let cts = self
                .frames
                .get(&x.study.to_string_lossy())
                .and_then(|m| m.get(&x.frame.to_string_lossy()));
            found.extend(cts.into_iter().flatten().map(String::as_str));
        }
        // A slice that points at another slice of its own series says
        // nothing about how series relate.
        found.remove(x.series.to_string_lossy().as_str());
        Links {
            modalities: found
                .iter()
                .map(|s| self.modality.get(*s).cloned().unwrap_or_default())
                .collect(),
            series: found.into_iter().map(str::to_owned).collect(),
        }
    }
}
