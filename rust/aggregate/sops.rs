//! The SOP Instance UIDs of one subseries: a multiset of 128-bit ids.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_128;

/// A SOP Instance UID's identity: XXH3-128 of its bytes, big-endian.
/// XXH3's output is frozen since xxHash 0.8.0 (the same on every platform
/// and release), so ids can be written out and merged; 128 bits make a
/// collision negligible (about 1e-23 at 1e8 files) where 64 would not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sop(pub [u8; 16]);

impl Sop {
    pub fn of(uid: &[u8]) -> Sop {
        Sop(xxh3_128(uid).to_be_bytes())
    }
}

/// Each SOP with its number of files (at least 1). Hash tables use std's
/// per-process random keys: ids are public, bucket places are not.
#[derive(Clone, Debug, Default)]
pub enum Sops {
    #[default]
    Empty,
    /// A single-file subseries (the CR/DX case) keeps its id inline.
    One(Sop, u32),
    /// Boxed: a HashMap is 48 bytes, and most groups have one file.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Sop, u32>>),
}

impl Sops {
    /// Count `n` files more of `sop`; returns how many of them are
    /// duplicates (files of a SOP already counted).
    pub fn add(&mut self, sop: Sop, n: u32) -> u32 {
        let n = n.max(1);
        match self {
            Sops::Empty => {
                *self = Sops::One(sop, n);
                n - 1
            }
            Sops::One(s, c) if *s == sop => {
                let was = *c;
                *c = c.saturating_add(n);
                *c - was
            }
            Sops::One(s, c) => {
                let mut m = HashMap::with_capacity(2);
                m.insert(*s, *c);
                m.insert(sop, n);
                *self = Sops::Many(Box::new(m));
                n - 1
            }
            Sops::Many(m) => match m.entry(sop) {
                Entry::Occupied(mut o) => {
                    let c = o.get_mut();
                    let was = *c;
                    *c = c.saturating_add(n);
                    *c - was
                }
                Entry::Vacant(v) => {
                    v.insert(n);
                    n - 1
                }
            },
        }
    }

    /// Uncount one file of `sop`: Some(true) if it was a duplicate,
    /// Some(false) if it was the SOP's last file, None if not counted.
    pub fn remove(&mut self, sop: Sop) -> Option<bool> {
        let (dup, gone) = match self {
            Sops::Empty => return None,
            Sops::One(s, c) => {
                if *s != sop {
                    return None;
                }
                *c = c.saturating_sub(1);
                (*c > 0, *c == 0)
            }
            Sops::Many(m) => {
                let c = m.get_mut(&sop)?;
                *c = c.saturating_sub(1);
                if *c == 0 {
                    m.remove(&sop);
                    (false, m.is_empty())
                } else {
                    (true, false)
                }
            }
        };
        if gone {
            *self = Sops::Empty;
        }
        Some(dup)
    }

    pub fn contains(&self, sop: &Sop) -> bool {
        match self {
            Sops::Empty => false,
            Sops::One(s, _) => s == sop,
            Sops::Many(m) => m.contains_key(sop),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (Sop, u32)> + '_ {
        let (one, many) = match self {
            Sops::Empty => (None, None),
            Sops::One(s, c) => (Some((*s, *c)), None),
            Sops::Many(m) => (None, Some(m.iter().map(|(s, c)| (*s, *c)))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Distinct SOPs.
    pub fn distinct(&self) -> u64 {
        match self {
            Sops::Empty => 0,
            Sops::One(..) => 1,
            Sops::Many(m) => m.len() as u64,
        }
    }

    /// Files beyond the first of each SOP.
    pub fn duplicates(&self) -> u64 {
        self.iter().map(|(_, c)| u64::from(c) - 1).sum()
    }

    pub fn sorted(&self) -> Vec<(Sop, u32)> {
        let mut v: Vec<_> = self.iter().collect();
        v.sort_unstable();
        v
    }
}
