//! Per-file records folded into subseries: a mergeable, persistent
//! aggregate.
//!
//! A subseries (a group) keeps its representative as one compact blob (see
//! `blob`: the path, the key, the other stored values; UIDs packed two
//! digits to the byte), and the multiset of its files' SOP Instance UIDs as
//! 128-bit ids with a count each (see `sops`; inline for a single-file
//! subseries), plus the number of its files without a SOP Instance UID.
//! From these, whatever the order files came in:
//! - `instances` = distinct SOPs + files without one; `duplicates` = files
//!   beyond the first of each SOP in each subseries (so the same instance
//!   in two series counts in both, and is no duplicate);
//! - references are resolved when the output is asked for (`links`): only
//!   the referenced SOPs, series and frames are looked up, in one pass over
//!   the groups, so nothing per file is kept for them.
//!
//! Operations: `add` a file's record; `remove` it again (a file that changed
//! or vanished: counts come out exactly as if it had never been added);
//! `merge` another aggregate (partial results of other processes: the state
//! is a commutative, associative function of the files added, so any split
//! and order give the same output and the same `to_bytes`); `to_bytes` and
//! `from_bytes` (see `persist`).
//!
//! The representative is the member with the smallest path (byte-wise; two
//! members with one path: the smaller blob). Keeping every member's record
//! to know the next smallest after a `remove` would cost what the per-file
//! records cost, so a group whose representative is removed keeps a *floor*
//! instead: the removed path, below which no member is left that the
//! aggregate has not seen since. A file added or merged in with a path at or
//! under the floor is the representative again; one above it is only a
//! candidate. Until then the group is *open*: `needs_representative` lists
//! it and `finish` (the output) refuses, and the caller, which knows the
//! remaining files (an incremental run keeps per-file records), `offer`s the
//! smallest remaining one (offering more is harmless: the smallest wins). So
//! "remove, then add the same file" gives the state of a fresh run, and
//! merging open groups stays order-independent (floors and candidates each
//! merge by their minimum).
//!
//! Field indices are constants checked by a unit test; hashing for lookups
//! uses std's per-process random keys (never written out); the identities
//! written out are XXH3-128 (`Sop`) and the key strings themselves.

mod blob;
mod links;
mod persist;
mod sops;
#[cfg(test)]
mod tests;

use std::collections::hash_map::Entry as MapEntry;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::extract::record::Record;
use blob::{decode, encode, key_only, path_of, text_of, Text, View, KEY, SOP};
pub use links::Links;
use links::Resolver;
use sops::{Sop, Sops};

/// (patient_ID, study, series, subseries): the record key, in sort order.
pub type Key = (String, String, String, String);

/// An extra tag of the schema, as an aggregate records it: aggregates of
/// different extras do not merge, and bytes made with other extras are
/// refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraSig {
    pub name: String,
    pub tag: u32,
    pub vr: [u8; 2],
    pub multi: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// `remove` or `offer` of a file the aggregate does not hold.
    NotAdded(String),
    /// `merge` of aggregates made with different extra tags.
    Schema(String),
    /// `from_bytes` of bytes that are not a whole aggregate of this schema
    /// and version.
    Bytes(String),
    /// Output asked for while these subseries lack their representative.
    NeedsRepresentative(Vec<Key>),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAdded(m) | Error::Schema(m) => f.write_str(m),
            Error::Bytes(m) => write!(f, "not a fastindex aggregate: {m}"),
            Error::NeedsRepresentative(keys) => {
                write!(
                    f,
                    "{} subseries lost their representative file (offer the smallest remaining file of each)",
                    keys.len()
                )?;
                if let Some(k) = keys.first() {
                    write!(f, ", e.g. {k:?}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}

/// A group's representative.
#[derive(Clone, Debug)]
enum Rep {
    /// The blob of the member with the smallest path.
    Known(Box<[u8]>),
    /// The representative was removed.
    Open(Box<Open>),
}

#[derive(Clone, Debug)]
struct Open {
    /// A blob of the key alone, whose path is the floor: every member not
    /// added, merged or offered since has a path at least this.
    floor: Box<[u8]>,
    /// The smallest member added, merged or offered since (above the floor).
    best: Option<Box<[u8]>>,
}

/// `a` goes before `b` as a representative.
fn better(a: &[u8], b: &[u8]) -> bool {
    (path_of(a), a) < (path_of(b), b)
}

impl Rep {
    fn key_blob(&self) -> &[u8] {
        match self {
            Rep::Known(b) => b,
            Rep::Open(o) => &o.floor,
        }
    }

    /// Whether a member at `path` could become the representative (or the
    /// candidate): only then is its blob made.
    fn may_take(&self, path: &[u8]) -> bool {
        match self {
            Rep::Known(b) => path <= path_of(b),
            Rep::Open(o) => o.best.as_ref().is_none_or(|b| path <= path_of(b)),
        }
    }

    /// A member's blob competes.
    fn with_member(self, blob: Box<[u8]>) -> Rep {
        match self {
            Rep::Known(b) => Rep::Known(if better(&blob, &b) { blob } else { b }),
            Rep::Open(mut o) => {
                let best = match o.best.take() {
                    Some(b) if !better(&blob, &b) => b,
                    _ => blob,
                };
                if path_of(&best) <= path_of(&o.floor) {
                    Rep::Known(best)
                } else {
                    o.best = Some(best);
                    Rep::Open(o)
                }
            }
        }
    }

    /// Members not seen are at least `floor` (a key-only blob).
    fn with_floor(self, floor: Box<[u8]>) -> Rep {
        match self {
            Rep::Known(b) if path_of(&b) <= path_of(&floor) => Rep::Known(b),
            Rep::Known(b) => Rep::Open(Box::new(Open {
                floor,
                best: Some(b),
            })),
            Rep::Open(mut o) => {
                if path_of(&floor) < path_of(&o.floor) {
                    o.floor = floor;
                }
                Rep::Open(o)
            }
        }
    }

    /// The caller says the best member seen is the smallest there is.
    fn closed(self) -> Rep {
        match self {
            Rep::Open(o) => match o.best {
                Some(b) => Rep::Known(b),
                None => Rep::Open(o),
            },
            known => known,
        }
    }

    fn merged(self, other: Rep) -> Rep {
        match other {
            Rep::Known(b) => self.with_member(b),
            Rep::Open(o) => {
                let Open { floor, best } = *o;
                let rep = self.with_floor(floor);
                match best {
                    Some(b) => rep.with_member(b),
                    None => rep,
                }
            }
        }
    }
}

fn placeholder() -> Rep {
    Rep::Known(Box::default())
}

#[derive(Clone, Debug)]
pub struct Group {
    rep: Rep,
    sops: Sops,
    /// Files without a SOP Instance UID (each its own instance).
    no_sop: u32,
}

impl Group {
    pub fn instances(&self) -> u64 {
        self.sops.distinct() + u64::from(self.no_sop)
    }

    fn is_empty(&self) -> bool {
        self.no_sop == 0 && matches!(self.sops, Sops::Empty)
    }

    fn key(&self) -> Key {
        let k = View::of(self.rep.key_blob()).map(|v| v.key.map(Text::to_string_lossy));
        let [a, b, c, d] = k.unwrap_or_default();
        (a, b, c, d)
    }

    /// Fold another group of the same key in; returns the duplicates added.
    fn absorb(&mut self, other: Group) -> u64 {
        self.no_sop = self.no_sop.saturating_add(other.no_sop);
        let mut dups = 0;
        for (s, c) in other.sops.iter() {
            dups += u64::from(self.sops.add(s, c));
        }
        let rep = std::mem::replace(&mut self.rep, placeholder());
        self.rep = rep.merged(other.rep);
        dups
    }
}

/// Hashes that are already keyed hashes go into the tables as they are.
#[derive(Default, Clone, Copy)]
struct Keyed(u64);

impl Hasher for Keyed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type ByKeyed = BuildHasherDefault<Keyed>;

/// The groups by keyed hash of their key; two keys of one hash (about one
/// in 1e7 at 1e6 groups) are told apart by comparing the keys.
#[derive(Clone, Default)]
struct Index {
    first: HashMap<u64, usize, ByKeyed>,
    more: HashMap<u64, Vec<usize>, ByKeyed>,
}

impl Index {
    fn candidates(&self, h: u64) -> impl Iterator<Item = usize> + '_ {
        // `more` is looked at only past `first` (and has nothing without it).
        let more =
            std::iter::once(h).flat_map(|h| self.more.get(&h).into_iter().flatten().copied());
        self.first.get(&h).copied().into_iter().chain(more)
    }

    fn insert(&mut self, h: u64, id: usize) {
        match self.first.entry(h) {
            MapEntry::Occupied(_) => self.more.entry(h).or_default().push(id),
            MapEntry::Vacant(v) => {
                v.insert(id);
            }
        }
    }

    fn remove(&mut self, h: u64, id: usize) {
        if self.first.get(&h) == Some(&id) {
            self.first.remove(&h);
            if let Some(v) = self.more.get_mut(&h) {
                if let Some(next) = v.pop() {
                    self.first.insert(h, next);
                }
                if v.is_empty() {
                    self.more.remove(&h);
                }
            }
        } else if let Some(v) = self.more.get_mut(&h) {
            v.retain(|&x| x != id);
            if v.is_empty() {
                self.more.remove(&h);
            }
        }
    }

    fn renumber(&mut self, h: u64, from: usize, to: usize) {
        if let Some(x) = self.first.get_mut(&h).filter(|x| **x == from) {
            *x = to;
        } else if let Some(v) = self.more.get_mut(&h) {
            v.iter_mut().filter(|x| **x == from).for_each(|x| *x = to);
        }
    }
}

/// A subseries record: its representative's record and path, its count of
/// instances and its resolved references.
#[derive(Debug)]
pub struct Subseries {
    pub record: Record,
    pub path: OsString,
    pub instances: u64,
    pub links: Links,
}

/// The output order and the reference tables, valid until the aggregate
/// changes (then `Aggregator::subseries` gives None).
pub struct Finished {
    order: Vec<usize>,
    resolver: Resolver,
    /// References (reference_ct/rs/pl) that resolve to nothing in the
    /// index: they point outside the archive.
    pub unresolved: u64,
    generation: u64,
}

impl Finished {
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[derive(Clone)]
pub struct Aggregator {
    groups: Vec<Group>,
    index: Index,
    hasher: RandomState,
    extras: Vec<ExtraSig>,
    /// Files whose SOP Instance UID was already counted in their subseries.
    duplicates: u64,
    /// Changes with every change, so that a `Finished` knows it is stale.
    generation: u64,
    scratch: Vec<u8>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator::new(Vec::new())
    }
}

impl fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregator")
            .field("groups", &self.groups.len())
            .field("duplicates", &self.duplicates)
            .finish()
    }
}

/// The four parts of a key, unpacked into `buf`.
fn key_parts<'b>(view: &View<'_>, buf: &'b mut Vec<u8>) -> [&'b [u8]; 4] {
    buf.clear();
    let mut ends = [0; 4];
    for (t, end) in view.key.iter().zip(&mut ends) {
        t.push_to(buf);
        *end = buf.len();
    }
    let buf: &'b [u8] = buf;
    let part = |i: usize| {
        let start = if i == 0 { 0 } else { ends[i - 1] };
        buf.get(start..ends[i]).unwrap_or_default()
    };
    [part(0), part(1), part(2), part(3)]
}

fn key_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    match (View::of(a), View::of(b)) {
        (Some(a), Some(b)) => a
            .key
            .iter()
            .zip(&b.key)
            .map(|(x, y)| x.compare(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal),
        _ => std::cmp::Ordering::Equal,
    }
}

impl Aggregator {
    pub fn new(extras: Vec<ExtraSig>) -> Self {
        Aggregator {
            groups: Vec::new(),
            index: Index::default(),
            hasher: RandomState::new(),
            extras,
            duplicates: 0,
            generation: 0,
            scratch: Vec::new(),
        }
    }

    pub fn extras(&self) -> &[ExtraSig] {
        &self.extras
    }

    /// Subseries.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    fn key_hash(&self, parts: &[&[u8]; 4]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for p in parts {
            h.write(p);
            h.write_u8(0xFF); // never in UTF-8: the parts cannot run together
        }
        h.finish()
    }

    fn find(&self, h: u64, parts: &[&[u8]; 4]) -> Option<usize> {
        self.index.candidates(h).find(|&id| {
            self.groups
                .get(id)
                .and_then(|g| View::of(g.rep.key_blob()))
                .is_some_and(|v| v.key.iter().zip(parts).all(|(t, p)| t.is(p)))
        })
    }

    /// The hash of a blob's key, and its group if there is one.
    fn find_blob(&mut self, blob: &[u8]) -> (u64, Option<usize>) {
        let mut buf = std::mem::take(&mut self.scratch);
        let found = View::of(blob).map(|v| {
            let parts = key_parts(&v, &mut buf);
            let h = self.key_hash(&parts);
            (h, self.find(h, &parts))
        });
        self.scratch = buf;
        found.unwrap_or((0, None))
    }

    fn find_record(&self, record: &Record) -> (u64, Option<usize>) {
        let parts = KEY.map(|i| text_of(record, i).as_bytes());
        let h = self.key_hash(&parts);
        (h, self.find(h, &parts))
    }

    fn push(&mut self, h: u64, group: Group) {
        self.duplicates += group.sops.duplicates();
        self.index.insert(h, self.groups.len());
        self.groups.push(group);
    }

    fn blob(&mut self, record: &Record, path: &[u8]) -> Box<[u8]> {
        encode(&mut self.scratch, record, path, self.extras.len());
        Box::from(&self.scratch[..])
    }

    /// Fold in one file's record.
    pub fn add(&mut self, record: &Record, path: &OsStr) {
        self.generation += 1;
        let path = path.as_bytes();
        let (h, found) = self.find_record(record);
        let id = match found {
            Some(id) => {
                let takes = self.groups.get(id).is_some_and(|g| g.rep.may_take(path));
                if takes {
                    let blob = self.blob(record, path);
                    if let Some(g) = self.groups.get_mut(id) {
                        let rep = std::mem::replace(&mut g.rep, placeholder());
                        g.rep = rep.with_member(blob);
                    }
                }
                id
            }
            None => {
                let group = Group {
                    rep: Rep::Known(self.blob(record, path)),
                    sops: Sops::Empty,
                    no_sop: 0,
                };
                self.push(h, group);
                self.groups.len() - 1
            }
        };
        let sop = text_of(record, SOP);
        if let Some(g) = self.groups.get_mut(id) {
            if sop.is_empty() {
                g.no_sop = g.no_sop.saturating_add(1);
            } else {
                self.duplicates += u64::from(g.sops.add(Sop::of(sop.as_bytes()), 1));
            }
        }
    }

    /// The group of a file that was added, checked to count it.
    fn member(&self, record: &Record) -> Result<(u64, usize), Error> {
        let (h, found) = self.find_record(record);
        let key = || format!("{:?}", KEY.map(|i| text_of(record, i)));
        let id = found.ok_or_else(|| Error::NotAdded(format!("no subseries {}", key())))?;
        let sop = text_of(record, SOP);
        let counted = self.groups.get(id).is_some_and(|g| {
            if sop.is_empty() {
                g.no_sop > 0
            } else {
                g.sops.contains(&Sop::of(sop.as_bytes()))
            }
        });
        if !counted {
            return Err(Error::NotAdded(format!(
                "subseries {} has no file of SOP Instance UID {sop:?}",
                key()
            )));
        }
        Ok((h, id))
    }

    /// Take out a file that was added (it changed or vanished): `record`
    /// and `path` as they were added. Counts come out as if it had never
    /// been; if it was the representative, the group is open (see the
    /// module docs) until a member at or under its path is added or one is
    /// offered.
    pub fn remove(&mut self, record: &Record, path: &OsStr) -> Result<(), Error> {
        let (h, id) = self.member(record)?;
        self.generation += 1;
        let path = path.as_bytes();
        let sop = text_of(record, SOP);
        let Some(g) = self.groups.get_mut(id) else {
            return Ok(());
        };
        if sop.is_empty() {
            g.no_sop = g.no_sop.saturating_sub(1);
        } else if g.sops.remove(Sop::of(sop.as_bytes())) == Some(true) {
            self.duplicates = self.duplicates.saturating_sub(1);
        }
        if g.is_empty() {
            self.index.remove(h, id);
            let last = self.groups.len() - 1;
            self.groups.swap_remove(id);
            if id != last {
                let blob = self.groups.get(id).map(|g| g.rep.key_blob().to_vec());
                let (moved, _) = self.find_blob(&blob.unwrap_or_default());
                self.index.renumber(moved, last, id);
            }
            return Ok(());
        }
        g.rep = match std::mem::replace(&mut g.rep, placeholder()) {
            Rep::Known(b) if path_of(&b) == path => Rep::Open(Box::new(Open {
                floor: key_only(&b, path),
                best: None,
            })),
            Rep::Open(mut o) if o.best.as_ref().is_some_and(|b| path_of(b) == path) => {
                o.best = None;
                Rep::Open(o)
            }
            rep => rep,
        };
        Ok(())
    }

    /// A member of a group, already added and counted, offered as its
    /// representative: the caller says no remaining member has a smaller
    /// path (offering every remaining member also does). Closes an open
    /// group; on a closed one it only competes.
    pub fn offer(&mut self, record: &Record, path: &OsStr) -> Result<(), Error> {
        let (_, id) = self.member(record)?;
        self.generation += 1;
        let blob = self.blob(record, path.as_bytes());
        if let Some(g) = self.groups.get_mut(id) {
            let rep = std::mem::replace(&mut g.rep, placeholder());
            g.rep = rep.with_member(blob).closed();
        }
        Ok(())
    }

    /// Fold in another aggregate of the same schema (partial results).
    pub fn merge(&mut self, other: Aggregator) -> Result<(), Error> {
        if self.extras != other.extras {
            return Err(Error::Schema(
                "aggregates made with different extra tags do not merge".into(),
            ));
        }
        self.generation += 1;
        for g in other.groups {
            let (h, found) = self.find_blob(g.rep.key_blob());
            match found.and_then(|id| self.groups.get_mut(id)) {
                Some(mine) => self.duplicates += mine.absorb(g),
                None => self.push(h, g),
            }
        }
        Ok(())
    }

    /// The keys of the subseries whose representative was removed and not
    /// replaced yet, sorted.
    pub fn needs_representative(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self
            .groups
            .iter()
            .filter(|g| matches!(g.rep, Rep::Open(_)))
            .map(Group::key)
            .collect();
        keys.sort();
        keys
    }

    /// Group ids in output order: by key.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        let blob = |i: usize| self.groups.get(i).map_or(&[][..], |g| g.rep.key_blob());
        order.sort_unstable_by(|&a, &b| key_order(blob(a), blob(b)));
        order
    }

    /// Sort and resolve references, for the output.
    pub fn finish(&self) -> Result<Finished, Error> {
        let open = self.needs_representative();
        if !open.is_empty() {
            return Err(Error::NeedsRepresentative(open));
        }
        let order = self.order();
        let (resolver, unresolved) = Resolver::build(&self.groups, &order);
        Ok(Finished {
            order,
            resolver,
            unresolved,
            generation: self.generation,
        })
    }

    /// The `i`th subseries record in output order.
    pub fn subseries(&self, finished: &Finished, i: usize) -> Option<Subseries> {
        if finished.generation != self.generation {
            return None;
        }
        let g = self.groups.get(*finished.order.get(i)?)?;
        let Rep::Known(blob) = &g.rep else {
            return None;
        };
        let (record, path) = decode(blob, self.extras.len())?;
        Some(Subseries {
            record,
            path: OsString::from_vec(path),
            instances: g.instances(),
            links: finished.resolver.links(blob),
        })
    }

    /// Every subseries record in output order, and the unresolved count.
    pub fn records(&self) -> Result<(Vec<Subseries>, u64), Error> {
        let f = self.finish()?;
        let out = (0..f.len()).filter_map(|i| self.subseries(&f, i)).collect();
        Ok((out, f.unresolved))
    }
}
