//! The element stream: visits a data set's elements in order, keeps the
//! values the schema wants, skips every other value without reading it,
//! descends only into the first item of wanted sequences, and stops once no
//! wanted tag can follow. Pixel data is never read.

use crate::error::{Error, Result};
use crate::fields::{Tag, PIXEL_DATA};
use crate::schema::{Entry, Node, Schema};
use crate::source::Source;

/// Deeper nesting than this is refused: real files stay far below it, and
/// it bounds the recursion whatever the bytes say.
pub const MAX_DEPTH: usize = 32;
/// A wanted value longer than this is refused: every wanted tag is a short
/// string, so a larger declared length is damage, not data.
pub const MAX_VALUE: u32 = 64 * 1024;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = 0xFFFE_E000;
const ITEM_END: Tag = 0xFFFE_E00D;
const SEQUENCE_END: Tag = 0xFFFE_E0DD;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoding {
    pub explicit: bool,
    pub little: bool,
}

impl Encoding {
    pub const IMPLICIT_LE: Encoding = Encoding {
        explicit: false,
        little: true,
    };
    pub const EXPLICIT_LE: Encoding = Encoding {
        explicit: true,
        little: true,
    };
    pub const EXPLICIT_BE: Encoding = Encoding {
        explicit: true,
        little: false,
    };
}

/// Values kept from one file: one span per slot into a shared arena, so a
/// batch of files reuses the same two allocations.
#[derive(Default)]
pub struct Collected {
    spans: Vec<Option<Span>>,
    arena: Vec<u8>,
    /// True once any wanted value was seen (a bare data set that yields
    /// nothing before failing is taken for not DICOM).
    pub found_any: bool,
    /// The read buffer, kept from file to file.
    pub buffer: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Span {
    vr: [u8; 2],
    start: usize,
    len: usize,
}

impl Collected {
    pub fn reset(&mut self, slots: usize) {
        self.spans.clear();
        self.spans.resize(slots, None);
        self.arena.clear();
        self.found_any = false;
    }

    /// The VR and bytes kept in a slot.
    pub fn get(&self, slot: usize) -> Option<([u8; 2], &[u8])> {
        let s = self.spans.get(slot).copied().flatten()?;
        Some((s.vr, &self.arena[s.start..s.start + s.len]))
    }

    fn put(&mut self, slot: usize, vr: [u8; 2], bytes: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        if let Some(s) = self.spans.get_mut(slot) {
            *s = Some(Span {
                vr,
                start,
                len: bytes.len(),
            });
        }
        self.found_any = true;
    }
}

struct Header {
    tag: Tag,
    /// The VR as written, or `None` in implicit VR and for item tags.
    vr: Option<[u8; 2]>,
    len: u32,
}

/// VRs whose explicit encoding has a 4-byte length after 2 reserved bytes.
pub fn long_length(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

pub fn valid_vr(vr: [u8; 2]) -> bool {
    vr[0].is_ascii_uppercase() && vr[1].is_ascii_uppercase()
}

pub struct Stream<'s, 'a> {
    pub src: &'s mut Source<'a>,
    pub schema: &'s Schema,
    pub out: &'s mut Collected,
}

fn u16_in(b: [u8; 2], enc: Encoding) -> u16 {
    if enc.little {
        u16::from_le_bytes(b)
    } else {
        u16::from_be_bytes(b)
    }
}

fn u32_in(b: [u8; 4], enc: Encoding) -> u32 {
    if enc.little {
        u32::from_le_bytes(b)
    } else {
        u32::from_be_bytes(b)
    }
}

impl Stream<'_, '_> {
    fn header(&mut self, enc: Encoding) -> Result<Header> {
        let t: [u8; 8] = self.src.take_array()?;
        let group = u16_in([t[0], t[1]], enc);
        let element = u16_in([t[2], t[3]], enc);
        let tag = ((group as u32) << 16) | element as u32;
        if group == 0xFFFE || !enc.explicit {
            return Ok(Header {
                tag,
                vr: None,
                len: u32_in([t[4], t[5], t[6], t[7]], enc),
            });
        }
        let vr = [t[4], t[5]];
        if !valid_vr(vr) {
            return Err(Error::Malformed(format!(
                "invalid VR {:02X}{:02X} at ({group:04X},{element:04X})",
                vr[0], vr[1]
            )));
        }
        let len = if long_length(vr) {
            u32_in(self.src.take_array()?, enc)
        } else {
            u16_in([t[6], t[7]], enc) as u32
        };
        Ok(Header {
            tag,
            vr: Some(vr),
            len,
        })
    }

    /// Has a defined-length item or sequence ended here? Past its end is
    /// damage: the lengths inside it disagree with its own.
    fn reached(&self, end: u64, overrun: &str) -> Result<bool> {
        let pos = self.src.position();
        if pos > end {
            return Err(Error::Malformed(format!("{overrun} at byte {end}")));
        }
        Ok(pos == end)
    }

    /// Read the top-level data set until no wanted tag can follow.
    pub fn top(&mut self, enc: Encoding) -> Result<()> {
        let root = &self.schema.root;
        self.dataset(enc, Some(root), None, 0, true)
    }

    /// Read one data set: the top level (ends at the end of the stream, or
    /// early), or an item (ends at `end`, or at its delimiter when `end` is
    /// None). `node` is what is wanted here; None passes over everything.
    fn dataset(
        &mut self,
        enc: Encoding,
        mut node: Option<&Node>,
        end: Option<u64>,
        depth: usize,
        top: bool,
    ) -> Result<()> {
        let mut last: Option<Tag> = None;
        let mut cursor = 0usize;
        loop {
            if let Some(end) = end {
                if self.reached(end, "an element runs past the end of its item")? {
                    return Ok(());
                }
            } else if top && self.src.at_end()? {
                return Ok(());
            }
            let h = self.header(enc)?;
            if h.tag == ITEM_END && end.is_none() && !top {
                return Ok(());
            }
            if h.tag >> 16 == 0xFFFE {
                return Err(Error::Malformed(format!(
                    "unexpected delimiter ({:04X},{:04X})",
                    h.tag >> 16,
                    h.tag & 0xFFFF
                )));
            }
            // Tags ascend in a valid data set; a repeat means we are reading
            // garbage (zeros, say) and must not walk it to the end.
            if last.is_some_and(|l| h.tag <= l) {
                return Err(Error::Malformed(format!(
                    "tags out of order at ({:04X},{:04X})",
                    h.tag >> 16,
                    h.tag & 0xFFFF
                )));
            }
            last = Some(h.tag);
            if let Some(n) = node {
                if h.tag > n.max_tag() || h.tag == PIXEL_DATA {
                    if top {
                        return Ok(());
                    }
                    // Nothing more wanted in this item: pass over the rest.
                    if let Some(end) = end {
                        self.skip_value(enc, &h, depth)?;
                        let here = self.src.position();
                        if here < end {
                            self.src.skip(end - here)?;
                        }
                        continue;
                    }
                    node = None;
                }
            }
            // Tags ascend, so the wanted table is walked with a cursor that
            // only moves forward: no search per element.
            let entry = node.and_then(|n| {
                let wanted = n.entries();
                while cursor < wanted.len() && wanted[cursor].0 < h.tag {
                    cursor += 1;
                }
                wanted.get(cursor).filter(|w| w.0 == h.tag).map(|w| &w.1)
            });
            match entry {
                Some(Entry::Leaf(slot)) => self.leaf(&h, *slot)?,
                Some(Entry::Seq(child))
                    if matches!(h.vr, None | Some([b'S', b'Q']) | Some([b'U', b'N'])) =>
                {
                    // UN holds the sequence in implicit VR little endian.
                    let item_enc = if h.vr == Some(*b"UN") {
                        Encoding::IMPLICIT_LE
                    } else {
                        enc
                    };
                    self.sequence(item_enc, Some(child), h.len, depth + 1)?
                }
                _ => self.skip_value(enc, &h, depth)?,
            }
        }
    }

    fn leaf(&mut self, h: &Header, slot: usize) -> Result<()> {
        let tag = h.tag;
        if h.len == UNDEFINED {
            return Err(Error::Declined(format!(
                "({:04X},{:04X}) has undefined length",
                tag >> 16,
                tag & 0xFFFF
            )));
        }
        if h.len > MAX_VALUE {
            return Err(Error::Malformed(format!(
                "({:04X},{:04X}) claims {} bytes, more than any such value holds",
                tag >> 16,
                tag & 0xFFFF,
                h.len
            )));
        }
        let vr = match h.vr {
            Some(vr) if &vr != b"UN" => vr,
            _ => self.schema.slot_vr[slot],
        };
        let bytes = self.src.take(h.len as usize)?;
        self.out.put(slot, vr, bytes);
        Ok(())
    }

    /// Pass over a value nobody wants. Defined lengths are skipped unread;
    /// undefined lengths (sequences, encapsulated pixel data) are walked
    /// item by item to find their end.
    fn skip_value(&mut self, enc: Encoding, h: &Header, depth: usize) -> Result<()> {
        if h.len != UNDEFINED {
            return self.src.skip(h.len as u64);
        }
        let item_enc = if h.vr == Some(*b"UN") {
            Encoding::IMPLICIT_LE
        } else {
            enc
        };
        self.sequence(item_enc, None, UNDEFINED, depth + 1)
    }

    /// Read a sequence's items; only the first item is searched.
    fn sequence(
        &mut self,
        enc: Encoding,
        node: Option<&Node>,
        len: u32,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::Malformed(format!(
                "sequences nested deeper than {MAX_DEPTH}"
            )));
        }
        if node.is_none() && len != UNDEFINED {
            return self.src.skip(len as u64);
        }
        let end = (len != UNDEFINED).then(|| self.src.position() + len as u64);
        let mut index = 0usize;
        loop {
            if let Some(end) = end {
                if self.reached(end, "an item runs past the end of its sequence")? {
                    return Ok(());
                }
            }
            let t: [u8; 8] = self.src.take_array()?;
            let group = u16_in([t[0], t[1]], enc);
            let element = u16_in([t[2], t[3]], enc);
            let tag = ((group as u32) << 16) | element as u32;
            let item_len = u32_in([t[4], t[5], t[6], t[7]], enc);
            match tag {
                SEQUENCE_END if end.is_none() => return Ok(()),
                ITEM => {
                    let wanted = if index == 0 { node } else { None };
                    index += 1;
                    if item_len == UNDEFINED {
                        self.dataset(enc, wanted, None, depth, false)?;
                    } else if wanted.is_none() {
                        self.src.skip(item_len as u64)?;
                    } else {
                        let item_end = self.src.position() + item_len as u64;
                        self.dataset(enc, wanted, Some(item_end), depth, false)?;
                    }
                }
                _ => {
                    return Err(Error::Malformed(format!(
                        "expected an item, found ({group:04X},{element:04X})"
                    )))
                }
            }
        }
    }
}
