//! The serialized form: canonical (one aggregate state, one byte string,
//! whatever the order of adds and merges that made it) and checked on the
//! way in (the bytes are untrusted input: damage or a foreign blob is an
//! error, never a panic, and nothing is allocated beyond what the input's
//! length can hold).
//!
//! ```text
//! magic      8 bytes  89 'F' 'I' 'A' 'G' 'G' 0D 0A
//! version    u32 LE   1
//! fields     u64 LE   XXH3-64 of the field table (names, kinds, scopes)
//! extras     n, then per extra: name (n + bytes), tag u32 LE, VR 2 bytes, multi u8
//! groups     n, then per group in key order:
//!              state u8: 0 representative known, 1 open, 2 open with a candidate
//!              blob: the representative (0), or the key-only floor blob (1, 2)
//!              then the candidate's blob (2)
//!              files without a SOP Instance UID: n
//!              SOPs: n, then per SOP in increasing order: id 16 bytes, files n
//! checksum   u64 LE   XXH3-64 of everything before
//! ```
//! `n` is an unsigned LEB128 in its shortest form; a blob is n + bytes
//! (see `blob`). Integers are little-endian.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64;

use super::blob::{body_fields, check, path_of, put_bytes, put_varint, Cursor, View};
use super::sops::{Sop, Sops};
use super::{key_order, Aggregator, Error, ExtraSig, Group, Open, Rep};
use crate::extract::fields::FIELDS;

const MAGIC: [u8; 8] = *b"\x89FIAGG\r\n";
const VERSION: u32 = 1;

/// The field table the blobs were laid out by.
fn fingerprint() -> u64 {
    let mut t = Vec::new();
    for f in FIELDS {
        for part in [f.name, f.kind.name(), f.scope.name()] {
            t.extend_from_slice(part.as_bytes());
            t.push(0);
        }
    }
    xxh3_64(&t)
}

fn bad(what: impl Into<String>) -> Error {
    Error::Bytes(what.into())
}

impl Aggregator {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.groups.len() * 128);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&fingerprint().to_le_bytes());
        put_varint(&mut out, self.extras.len() as u64);
        for e in &self.extras {
            put_bytes(&mut out, e.name.as_bytes());
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.vr);
            out.push(u8::from(e.multi));
        }
        put_varint(&mut out, self.groups.len() as u64);
        for g in self.order().into_iter().filter_map(|i| self.groups.get(i)) {
            match &g.rep {
                Rep::Known(b) => {
                    out.push(0);
                    put_bytes(&mut out, b);
                }
                Rep::Open(o) => {
                    out.push(if o.best.is_some() { 2 } else { 1 });
                    put_bytes(&mut out, &o.floor);
                    if let Some(b) = &o.best {
                        put_bytes(&mut out, b);
                    }
                }
            }
            put_varint(&mut out, u64::from(g.no_sop));
            let sops = g.sops.sorted();
            put_varint(&mut out, sops.len() as u64);
            for (s, c) in sops {
                out.extend_from_slice(&s.0);
                put_varint(&mut out, u64::from(c));
            }
        }
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// An aggregate from `to_bytes`' output, made with these extra tags.
    pub fn from_bytes(extras: Vec<ExtraSig>, data: &[u8]) -> Result<Aggregator, Error> {
        if data.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(bad("no aggregate header"));
        }
        let mut c = Cursor::new(data);
        c.take(MAGIC.len() as u64);
        let version = c.array::<4>().map(u32::from_le_bytes);
        if version != Some(VERSION) {
            return Err(bad(format!(
                "format version {}, this build reads {VERSION}",
                version.map_or("?".into(), |v| v.to_string())
            )));
        }
        let body_len = data.len().checked_sub(8).ok_or_else(|| bad("cut short"))?;
        let (body, sum) = data.split_at(body_len);
        let sum: [u8; 8] = sum.try_into().map_err(|_| bad("cut short"))?;
        if body_len < 12 || xxh3_64(body) != u64::from_le_bytes(sum) {
            return Err(bad("damaged (checksum mismatch)"));
        }
        let mut c = Cursor::new(body.get(12..).unwrap_or_default());
        let fields = c.array::<8>().map(u64::from_le_bytes);
        if fields != Some(fingerprint()) {
            return Err(bad("made by a build with another field table"));
        }
        let theirs = read_extras(&mut c).ok_or_else(|| bad("damaged extra tags"))?;
        if theirs != extras {
            let names = |v: &[ExtraSig]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
            return Err(bad(format!(
                "made with extra tags {:?}, not {:?}",
                names(&theirs),
                names(&extras)
            )));
        }
        let mut agg = Aggregator::new(extras);
        let values = body_fields().len() + agg.extras.len();
        let n = c.varint().ok_or_else(|| bad("damaged group count"))?;
        // A group takes 9 bytes at least: nothing beyond what could be there
        // is reserved.
        let room = c.remaining() / 9;
        agg.groups
            .reserve(usize::try_from(n).unwrap_or(usize::MAX).min(room));
        let mut previous: Option<Box<[u8]>> = None;
        for i in 0..n {
            let g = read_group(&mut c, values).ok_or_else(|| bad(format!("damaged group {i}")))?;
            let key = g.rep.key_blob();
            if previous
                .as_deref()
                .is_some_and(|p| key_order(p, key).is_ge())
            {
                return Err(bad(format!("group {i} out of order or repeated")));
            }
            previous = Some(key.into());
            let (h, _) = agg.find_blob(key);
            agg.push(h, g);
        }
        if !c.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(agg)
    }
}

fn read_extras(c: &mut Cursor<'_>) -> Option<Vec<ExtraSig>> {
    let n = c.varint()?;
    // 8 bytes an extra at least.
    let mut out = Vec::with_capacity(usize::try_from(n).ok()?.min(c.remaining() / 8));
    for _ in 0..n {
        let name = String::from_utf8(c.bytes()?.to_vec()).ok()?;
        let tag = u32::from_le_bytes(c.array()?);
        let vr = c.array()?;
        let multi = match c.array::<1>()? {
            [0] => false,
            [1] => true,
            _ => return None,
        };
        out.push(ExtraSig {
            name,
            tag,
            vr,
            multi,
        });
    }
    Some(out)
}

fn read_group(c: &mut Cursor<'_>, values: usize) -> Option<Group> {
    let state = c.array::<1>()?[0];
    let first: Box<[u8]> = c.bytes()?.into();
    let rep = match state {
        0 if check(&first, values) => Rep::Known(first),
        1 if check(&first, 0) => Rep::Open(Box::new(Open {
            floor: first,
            best: None,
        })),
        2 if check(&first, 0) => {
            let best: Box<[u8]> = c.bytes()?.into();
            let same_key = match (View::of(&best), View::of(&first)) {
                (Some(a), Some(b)) => a.key.iter().zip(&b.key).all(|(x, y)| x.compare(y).is_eq()),
                _ => false,
            };
            // A candidate at or under the floor is the representative: such
            // a state is never written.
            if !check(&best, values) || !same_key || path_of(&best) <= path_of(&first) {
                return None;
            }
            Rep::Open(Box::new(Open {
                floor: first,
                best: Some(best),
            }))
        }
        _ => return None,
    };
    let no_sop = u32::try_from(c.varint()?).ok()?;
    let n = usize::try_from(c.varint()?).ok()?;
    // 17 bytes a SOP at least.
    if n > c.remaining() / 17 {
        return None;
    }
    let mut list = Vec::with_capacity(n);
    for _ in 0..n {
        let sop = Sop(c.array()?);
        let count = u32::try_from(c.varint()?).ok().filter(|&k| k > 0)?;
        if list.last().is_some_and(|&(s, _)| s >= sop) {
            return None;
        }
        list.push((sop, count));
    }
    let sops = match list.as_slice() {
        [] => Sops::Empty,
        &[(s, k)] => Sops::One(s, k),
        _ => Sops::Many(Box::new(list.into_iter().collect::<HashMap<_, _>>())),
    };
    let g = Group { rep, sops, no_sop };
    (!g.is_empty()).then_some(g)
}
