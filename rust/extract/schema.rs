//! What to collect from a file: the tag paths of the field table (and any
//! extra top-level tags a user asked for) folded into a tree that the
//! element stream consults at every element, plus the slots values land in.

use crate::extract::fields::{tag, Tag, FIELDS, PIXEL_DATA, SPECIFIC_CHARACTER_SET};

const PIXEL_REPRESENTATION: Tag = tag(0x0028, 0x0103);

/// The wanted tags of one data set (the top level, or the first item of a
/// wanted sequence), sorted, so that the stream can stop once past them.
#[derive(Debug, Default)]
pub struct Node {
    entries: Vec<(Tag, Want)>,
}

#[derive(Debug)]
pub enum Want {
    /// A value to keep, in this slot.
    Leaf(usize),
    /// A sequence whose first item holds wanted values.
    Seq(Node),
    /// PixelRepresentation beside a wanted sequence: pydicom converts it
    /// when it first reads the sequence (to type the items' US or SS
    /// values), and gives no value for the sequence when that fails.
    PixelRepresentation,
}

impl Node {
    /// Where a data set holds a wanted sequence, its PixelRepresentation
    /// must be one pydicom converts (see `Want::PixelRepresentation`).
    fn check_pixel_representation(&mut self) {
        let mut has_sequence = false;
        for (_, e) in &mut self.entries {
            if let Want::Seq(child) = e {
                child.check_pixel_representation();
                has_sequence = true;
            }
        }
        if has_sequence {
            if let Err(i) = self
                .entries
                .binary_search_by_key(&PIXEL_REPRESENTATION, |e| e.0)
            {
                self.entries
                    .insert(i, (PIXEL_REPRESENTATION, Want::PixelRepresentation));
            }
        }
    }

    /// The last wanted tag here: nothing after it matters.
    pub fn max_tag(&self) -> Tag {
        self.entries.last().map_or(0, |e| e.0)
    }

    /// The wanted tags in ascending order, for a forward-only cursor.
    pub fn entries(&self) -> &[(Tag, Want)] {
        &self.entries
    }

    fn insert(&mut self, path: &[Tag], slot: usize) -> Result<(), String> {
        let (&first, rest) = path.split_first().ok_or("empty tag path")?;
        let at = match self.entries.binary_search_by_key(&first, |e| e.0) {
            Ok(i) => i,
            Err(i) => {
                let entry = if rest.is_empty() {
                    Want::Leaf(slot)
                } else {
                    Want::Seq(Node::default())
                };
                self.entries.insert(i, (first, entry));
                i
            }
        };
        match (&mut self.entries[at].1, rest.is_empty()) {
            (Want::Seq(node), false) => node.insert(rest, slot),
            (Want::Leaf(s), true) if *s == slot => Ok(()),
            _ => Err(format!(
                "({:04X},{:04X}) is wanted both as a value and as a sequence",
                first >> 16,
                first & 0xFFFF
            )),
        }
    }
}

/// A top-level tag the user asked for beyond the dictionary (`--tags`).
#[derive(Clone, Debug)]
pub struct Extra {
    pub name: String,
    pub tag: Tag,
    /// The VR from the DICOM dictionary: how to type the value.
    pub vr: [u8; 2],
    /// True when the dictionary allows several values (VM other than 1).
    pub multi: bool,
}

#[derive(Debug)]
pub struct Schema {
    pub root: Node,
    pub slots: usize,
    pub charset_slot: usize,
    /// For each field of `FIELDS`, the slots of its sources in order.
    pub field_slots: Vec<Vec<usize>>,
    pub extras: Vec<Extra>,
    /// The slot of each extra, in order.
    pub extra_slots: Vec<usize>,
    /// The dictionary VR of each slot: what an implicit VR file means.
    pub slot_vr: Vec<[u8; 2]>,
    /// The VRs an explicit VR file may give each slot's value (UN aside).
    slot_allowed: Vec<[[u8; 2]; 2]>,
    /// Slots filled from the meta group (0002,eeee), by tag.
    pub meta_slots: Vec<(Tag, usize)>,
    /// Slots below this hold the dictionary's fields; the rest, extra tags.
    field_slot_count: usize,
}

/// No value of the dictionary's fields comes near this size (64
/// characters of 4 bytes, a few values).
const PLAUSIBLE_FIELD: u32 = 1024;

/// The VRs a wanted value may be stored with: the one the dictionary gives
/// its tag, and another pydicom decodes to the very same text. Any other
/// VR (binary ones, a VR unknown to the standard) is declined: pydicom
/// converts the bytes by the VR written, into numbers, tags or bytes.
fn allowed(vr: [u8; 2]) -> [[u8; 2]; 2] {
    match &vr {
        // LO and SH: text in the character set, split on backslashes.
        b"LO" | b"SH" => [*b"LO", *b"SH"],
        _ => [vr, vr],
    }
}

impl Schema {
    pub fn new(extras: Vec<Extra>) -> Result<Schema, String> {
        let mut paths: Vec<(Vec<Tag>, [u8; 2])> = Vec::new();
        let mut slot_of = |p: &[Tag], vr: [u8; 2]| -> usize {
            match paths.iter().position(|q| q.0 == p) {
                Some(i) => i,
                None => {
                    paths.push((p.to_vec(), vr));
                    paths.len() - 1
                }
            }
        };
        let charset_slot = slot_of(&[SPECIFIC_CHARACTER_SET], *b"CS");
        let field_slots: Vec<Vec<usize>> = FIELDS
            .iter()
            .map(|f| f.sources.iter().map(|p| slot_of(p, f.kind.vr())).collect())
            .collect();
        let field_slot_count = field_slots
            .iter()
            .flatten()
            .chain([&charset_slot])
            .max()
            .map_or(0, |m| m + 1);
        let mut extra_slots = Vec::with_capacity(extras.len());
        for e in &extras {
            if e.tag >= PIXEL_DATA || e.tag >> 16 == 0x0002 || e.tag >> 16 == 0xFFFE {
                return Err(format!(
                    "{}: only data set tags before the pixel data can be read",
                    e.name
                ));
            }
            extra_slots.push(slot_of(&[e.tag], e.vr));
        }
        let mut root = Node::default();
        let mut meta_slots = Vec::new();
        for (slot, (p, _)) in paths.iter().enumerate() {
            // The meta group is read before the data set, apart from it.
            match p.as_slice() {
                [t] if t >> 16 == 0x0002 => meta_slots.push((*t, slot)),
                _ => root.insert(p, slot)?,
            }
        }
        root.check_pixel_representation();
        let slot_vr: Vec<[u8; 2]> = paths.iter().map(|p| p.1).collect();
        let slot_allowed = slot_vr.iter().map(|&vr| allowed(vr)).collect();
        Ok(Schema {
            root,
            slots: paths.len(),
            charset_slot,
            field_slots,
            extras,
            extra_slots,
            slot_vr,
            slot_allowed,
            meta_slots,
            field_slot_count,
        })
    }

    /// The largest length a slot's value plausibly has: a value cut by the
    /// end of the file that claims more was given a damaged length.
    pub fn plausible_len(&self, slot: usize) -> u32 {
        if slot < self.field_slot_count {
            PLAUSIBLE_FIELD
        } else {
            crate::dicom::elements::MAX_VALUE
        }
    }

    /// May a slot's value be stored with this VR (as written, not UN)?
    /// One table lookup, done only for wanted values.
    #[inline]
    pub fn allows(&self, slot: usize, vr: [u8; 2]) -> bool {
        self.slot_allowed
            .get(slot)
            .is_some_and(|a| a[0] == vr || a[1] == vr)
    }
}
