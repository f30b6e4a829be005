//! The element stream: visits a data set's elements in order, keeps the
//! values the schema wants, skips every other value without reading it,
//! and stops once no wanted tag can follow. Pixel data is never read.
//!
//! Whatever pydicom parses to build its record, the stream walks too, and
//! at least as strictly: the top level up to the stop, every item of a
//! wanted sequence, every item of a sequence of undefined length (defined
//! lengths inside them included). A file whose bytes pydicom could read
//! another way is refused (malformed or declined, and pydicom reads it);
//! what the stream accepts, both read the same way. Defined-length values
//! and sequences nobody wants are skipped by length, as pydicom does.

use crate::dicom::error::{Error, Result};
use crate::dicom::input::Source;
use crate::dicom::text::charset_raises;
use crate::extract::fields::{Tag, PIXEL_DATA, SPECIFIC_CHARACTER_SET};
use crate::extract::schema::{Node, Schema, Want};

/// Deeper nesting than this is refused: real files stay far below it, and
/// it bounds the recursion whatever the bytes say.
pub const MAX_DEPTH: usize = 32;
/// A wanted value longer than this is refused: every wanted tag is a short
/// string, so a larger declared length is damage, not data.
pub const MAX_VALUE: u32 = 64 * 1024;
/// pydicom takes a UN value this long or longer for bytes, not for the
/// value of the tag's dictionary VR.
const UN_AS_BYTES: u32 = 0xFFFF;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = 0xFFFE_E000;
const ITEM_END: Tag = 0xFFFE_E00D;
const SEQUENCE_END: Tag = 0xFFFE_E0DD;
/// No defined length encloses the element: only the end of the data does.
const NO_LIMIT: u64 = u64::MAX;

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
    /// True once any wanted top-level tag was seen (a bare data set that
    /// holds none is taken for not DICOM, as the pydicom path does).
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
        Some((s.vr, self.arena.get(s.start..s.start + s.len)?))
    }

    pub(crate) fn put(&mut self, slot: usize, vr: [u8; 2], bytes: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        if let Some(s) = self.spans.get_mut(slot) {
            *s = Some(Span {
                vr,
                start,
                len: bytes.len(),
            });
        }
    }
}

struct ElementHead {
    tag: Tag,
    /// The VR as written, or `None` in implicit VR and for item tags.
    vr: Option<[u8; 2]>,
    len: u32,
}

/// A set of VRs: bit `b - 'A'` of word `a - 'A'` for VR `ab`.
type VrSet = [u32; 26];

const fn vr_set(vrs: &[&[u8; 2]]) -> VrSet {
    let mut set = [0u32; 26];
    let mut i = 0;
    while i < vrs.len() {
        set[(vrs[i][0] - b'A') as usize] |= 1 << (vrs[i][1] - b'A');
        i += 1;
    }
    set
}

#[inline(always)]
fn in_set(set: &VrSet, vr: [u8; 2]) -> bool {
    let (a, b) = (
        vr[0].wrapping_sub(b'A') as usize,
        vr[1].wrapping_sub(b'A') as u32,
    );
    a < 26 && b < 26 && (set[a] >> b) & 1 == 1
}

const LONG_LENGTH: &[&[u8; 2]] = &[
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
];
const LONG: VrSet = vr_set(LONG_LENGTH);
const KNOWN: VrSet = {
    let short = vr_set(&[
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN",
        b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    ]);
    let mut set = LONG;
    let mut i = 0;
    while i < 26 {
        set[i] |= short[i];
        i += 1;
    }
    set
};

/// VRs whose explicit encoding has a 4-byte length after 2 reserved bytes.
#[inline(always)]
pub fn long_length(vr: [u8; 2]) -> bool {
    in_set(&LONG, vr)
}

/// Two capital letters: what pydicom takes for an explicit VR.
pub fn valid_vr(vr: [u8; 2]) -> bool {
    vr[0].is_ascii_uppercase() && vr[1].is_ascii_uppercase()
}

/// The VRs of the standard (pydicom knows these; any other two capitals
/// it reads with a 2-byte length but cannot convert).
pub fn known_vr(vr: [u8; 2]) -> bool {
    in_set(&KNOWN, vr)
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

fn show(tag: Tag) -> String {
    format!("({:04X},{:04X})", tag >> 16, tag & 0xFFFF)
}

/// The sequence delimiter as it is written in this byte order.
fn delimiter_bytes(enc: Encoding) -> [u8; 4] {
    if enc.little {
        [0xFE, 0xFF, 0xDD, 0xE0]
    } else {
        [0xFF, 0xFE, 0xE0, 0xDD]
    }
}

impl Stream<'_, '_> {
    /// A length that reaches past the end of the item or sequence holding
    /// it disagrees with that length: damage, never a cut file (a cut
    /// leaves the lengths it kept intact, they only point past the end).
    #[inline(always)]
    fn within(&self, n: u64, limit: u64, what: &'static str) -> Result<()> {
        // No overflow: positions stay far below 2^63, n below 2^32.
        if self.src.position() + n > limit {
            return Err(past_end(what, limit));
        }
        Ok(())
    }

    /// The data ended where `n` more bytes were needed: truncation, unless
    /// those bytes would also have run past `limit` (then the length
    /// around them is to blame). Checked only then: the common path
    /// costs nothing.
    #[cold]
    fn blame(&self, e: Error, n: u64, limit: u64, what: &'static str) -> Error {
        match e {
            Error::Truncated(_) if self.src.position().saturating_add(n) > limit => {
                past_end(what, limit)
            }
            e => e,
        }
    }

    /// The 8 bytes that start an element or an item: its tag, and the
    /// bytes as read (the rest is a VR and length, or a length).
    #[inline(always)]
    fn tag_and_rest(
        &mut self,
        enc: Encoding,
        limit: u64,
        what: &'static str,
    ) -> Result<(u32, [u8; 8])> {
        let t: [u8; 8] = match self.src.take_array() {
            Ok(t) => t,
            Err(e) => return Err(self.blame(e, 8, limit, what)),
        };
        let group = u16_in([t[0], t[1]], enc);
        let element = u16_in([t[2], t[3]], enc);
        Ok((((group as u32) << 16) | element as u32, t))
    }

    #[inline(always)]
    fn header(&mut self, enc: Encoding, limit: u64) -> Result<ElementHead> {
        let (tag, t) = self.tag_and_rest(enc, limit, "an element header")?;
        if tag >> 16 == 0xFFFE || !enc.explicit {
            return Ok(ElementHead {
                tag,
                vr: None,
                len: u32_in([t[4], t[5], t[6], t[7]], enc),
            });
        }
        let vr = [t[4], t[5]];
        if !valid_vr(vr) {
            return Err(Error::Malformed(format!(
                "invalid VR {:02X}{:02X} at {}",
                vr[0],
                vr[1],
                show(tag)
            )));
        }
        let len = if long_length(vr) {
            match self.src.take_array() {
                Ok(b) => u32_in(b, enc),
                Err(e) => return Err(self.blame(e, 4, limit, "an element header")),
            }
        } else {
            u16_in([t[6], t[7]], enc) as u32
        };
        Ok(ElementHead {
            tag,
            vr: Some(vr),
            len,
        })
    }

    /// Has a defined-length item or sequence ended here? Past its end is
    /// damage: the lengths inside it disagree with its own.
    fn reached(&self, end: u64) -> Result<bool> {
        let pos = self.src.position();
        if pos > end {
            return Err(past_end("an element", end));
        }
        Ok(pos == end)
    }

    /// The encoding of an item's elements, told from its first element as
    /// pydicom tells it: items of an explicit VR data set may be written
    /// in implicit VR (PS3.5 6.2.2 for UN; some writers do it for SQ, and
    /// some write UN sequences in explicit VR), never the other way round.
    fn item_encoding(&mut self, enc: Encoding) -> Result<Encoding> {
        if !enc.explicit {
            return Ok(enc);
        }
        Ok(match self.src.peek(6)? {
            Some(b) if !valid_vr([b[4], b[5]]) => Encoding {
                explicit: false,
                ..enc
            },
            _ => enc,
        })
    }

    /// Read the top-level data set until no wanted tag can follow.
    pub fn top(&mut self, enc: Encoding) -> Result<()> {
        let root = &self.schema.root;
        self.dataset::<true>(enc, Some(root), None, NO_LIMIT, 0)
    }

    /// Read one data set: the top level (ends at the end of the stream, or
    /// early), or an item (ends at `end`, or at its delimiter when `end` is
    /// None), within `limit`, the end of the innermost defined length
    /// around it. `node` is what is wanted here; None walks everything.
    /// `TOP`: the top level (two copies of the loop, each without the
    /// other's tests).
    fn dataset<const TOP: bool>(
        &mut self,
        enc: Encoding,
        mut node: Option<&Node>,
        end: Option<u64>,
        limit: u64,
        depth: usize,
    ) -> Result<()> {
        // The previous tag (as i64: -1 before the first, which may be 0).
        let mut last: i64 = -1;
        let mut cursor = 0usize;
        // A wanted sequence was read here; PixelRepresentation here was one
        // pydicom cannot convert (see `Want::PixelRepresentation`).
        let (mut sequences, mut bad_pixel_representation) = (false, false);
        loop {
            if let Some(end) = end {
                if self.reached(end)? {
                    return Ok(());
                }
            } else if TOP && self.src.at_end()? {
                return Ok(());
            }
            let h = self.header(enc, limit)?;
            if h.tag >> 16 == 0xFFFE {
                if h.tag == ITEM_END && end.is_none() && !TOP {
                    return self.within(0, limit, "an item delimiter");
                }
                return Err(Error::Malformed(format!(
                    "unexpected delimiter {}",
                    show(h.tag)
                )));
            }
            // Tags ascend in a valid data set; a repeat means we are reading
            // garbage (zeros, say) and must not walk it to the end; a tag
            // that goes back is one pydicom would still find.
            if h.tag as i64 <= last {
                return Err(Error::Malformed(format!(
                    "tags out of order at {}",
                    show(h.tag)
                )));
            }
            last = h.tag as i64;
            if let Some(n) = node {
                if h.tag > n.max_tag() || h.tag == PIXEL_DATA {
                    if TOP {
                        return Ok(());
                    }
                    // Nothing more wanted in this item, but pydicom reads it
                    // to its end: walk the rest.
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
                Some(Want::PixelRepresentation) => {
                    bad_pixel_representation = !converts(h.vr.unwrap_or(*b"US"), *b"US", h.len);
                    if bad_pixel_representation && sequences {
                        return Err(pixel_representation());
                    }
                    self.skip_value(enc, &h, limit, depth)?
                }
                Some(wanted) => {
                    if TOP {
                        self.out.found_any = true;
                    }
                    match wanted {
                        Want::Leaf(slot) => self.leaf(&h, *slot, limit)?,
                        Want::Seq(child) if self.is_sequence(&h) => {
                            if bad_pixel_representation {
                                return Err(pixel_representation());
                            }
                            sequences = true;
                            self.within(defined(h.len), limit, "a sequence")?;
                            self.sequence(enc, Some(child), h.len, limit, depth + 1)?
                        }
                        _ => self.skip_value(enc, &h, limit, depth)?,
                    }
                }
                // At the top level the character set is wanted.
                None if !TOP && h.tag == SPECIFIC_CHARACTER_SET => {
                    self.nested_charset(&h, limit)?
                }
                None => self.skip_value(enc, &h, limit, depth)?,
            }
        }
    }

    /// Is this element a sequence to pydicom? SQ, UN of undefined length or
    /// shorter than UN_AS_BYTES (read as the dictionary's SQ), and in
    /// implicit VR every tag the schema wants as a sequence.
    fn is_sequence(&self, h: &ElementHead) -> bool {
        match h.vr {
            None => true,
            Some(vr) => {
                &vr == b"SQ" || (&vr == b"UN" && (h.len == UNDEFINED || h.len < UN_AS_BYTES))
            }
        }
    }

    fn leaf(&mut self, h: &ElementHead, slot: usize, limit: u64) -> Result<()> {
        let tag = h.tag;
        self.within(defined(h.len), limit, "a value")?;
        if h.len == UNDEFINED {
            return Err(Error::Declined(format!(
                "{} has undefined length",
                show(tag)
            )));
        }
        if h.len > MAX_VALUE {
            return Err(Error::Malformed(format!(
                "{} claims {} bytes, more than any such value holds",
                show(tag),
                h.len
            )));
        }
        let vr = match h.vr {
            // pydicom reads UN as the dictionary's VR (up to a length).
            Some(vr) if &vr == b"UN" => {
                if h.len >= UN_AS_BYTES {
                    return Err(Error::Declined(format!("{} is a long UN value", show(tag))));
                }
                self.schema.slot_vr[slot]
            }
            Some(vr) => {
                if !self.schema.allows(slot, vr) || !converts(vr, vr, h.len) {
                    return Err(Error::Declined(format!(
                        "{} is stored with VR {}{}",
                        show(tag),
                        vr[0] as char,
                        vr[1] as char
                    )));
                }
                vr
            }
            None => self.schema.slot_vr[slot],
        };
        let plausible = self.schema.plausible_len(slot);
        let bytes = match self.src.take(h.len as usize) {
            // A cut inside a value of the size the dictionary's values have
            // is a cut file; a value far larger than any such value that
            // runs past the end is a damaged length.
            Err(Error::Truncated(_)) if h.len > plausible => {
                return Err(Error::Malformed(format!(
                    "{} claims {} bytes, past the end of the file",
                    show(tag),
                    h.len
                )))
            }
            other => other?,
        };
        if tag == SPECIFIC_CHARACTER_SET && charset_raises(bytes) {
            return Err(charset_refused());
        }
        self.out.put(slot, vr, bytes);
        Ok(())
    }

    /// A character set inside an item nobody wants: pydicom reads it as it
    /// reads the item, and fails on some (a NUL inside a term, a value
    /// that is not text).
    fn nested_charset(&mut self, h: &ElementHead, limit: u64) -> Result<()> {
        self.within(defined(h.len), limit, "a value")?;
        if h.len == UNDEFINED || h.len > MAX_VALUE {
            return Err(charset_refused());
        }
        if let Some(vr) = h.vr {
            if &vr != b"CS" && !(&vr == b"UN" && h.len < UN_AS_BYTES) {
                return Err(charset_refused());
            }
        }
        if charset_raises(self.src.take(h.len as usize)?) {
            return Err(charset_refused());
        }
        Ok(())
    }

    /// Pass over a value nobody wants. Defined lengths are skipped unread;
    /// undefined lengths are walked to their end as pydicom finds it.
    /// The value, or the header alone when its length is undefined, must
    /// end within the item or sequence around it.
    #[inline(always)]
    fn skip_value(
        &mut self,
        enc: Encoding,
        h: &ElementHead,
        limit: u64,
        depth: usize,
    ) -> Result<()> {
        if h.len != UNDEFINED {
            self.within(h.len as u64, limit, "a value")?;
            return self.src.skip(h.len as u64);
        }
        self.within(0, limit, "an element header")?;
        self.walk_undefined(enc, h, limit, depth)
    }

    /// A value of undefined length nobody wants: a sequence, or
    /// encapsulated data.
    fn walk_undefined(
        &mut self,
        enc: Encoding,
        h: &ElementHead,
        limit: u64,
        depth: usize,
    ) -> Result<()> {
        let sequence = match h.vr {
            Some(vr) => &vr == b"SQ" || &vr == b"UN",
            // Implicit VR: pydicom asks its dictionary, then whether an
            // item follows; an item following is what both agree on.
            None => match self.src.peek(4)? {
                Some(b) => {
                    u16_in([b[0], b[1]], enc) == 0xFFFE && u16_in([b[2], b[3]], enc) == 0xE000
                }
                None => false,
            },
        };
        if sequence {
            self.sequence(enc, None, UNDEFINED, limit, depth + 1)
        } else {
            self.encapsulated(enc, limit)
        }
    }

    /// A value of undefined length that is not a sequence (encapsulated
    /// data): items of fragments up to a sequence delimiter, as pydicom
    /// first tries. Where that fails pydicom scans the bytes for the
    /// delimiter instead: the stream scans what it passes over, so that it
    /// can tell a file that ends without one (truncated) from one whose
    /// items pydicom would read another way (declined).
    fn encapsulated(&mut self, enc: Encoding, limit: u64) -> Result<()> {
        let pattern = delimiter_bytes(enc);
        let mut scan = Scan::new(pattern);
        let result = self.fragments(enc, limit, &mut scan);
        match result {
            Err(Error::Truncated(at)) if scan.found => Err(Error::Declined(format!(
                "encapsulated value damaged before byte {at}: pydicom would resume at a delimiter"
            ))),
            other => other,
        }
    }

    fn fragments(&mut self, enc: Encoding, limit: u64, scan: &mut Scan) -> Result<()> {
        loop {
            let t: [u8; 4] = match self.src.take_array() {
                Ok(t) => t,
                Err(e) => return Err(self.blame(e, 8, limit, "a fragment header")),
            };
            if t == scan.pattern {
                // The delimiter's own 4-byte length follows.
                let _: [u8; 4] = self.src.take_array()?;
                return Ok(());
            }
            scan.feed(&t);
            let item = u16_in([t[0], t[1]], enc) == 0xFFFE && u16_in([t[2], t[3]], enc) == 0xE000;
            if !item {
                return Err(Error::Declined(
                    "an encapsulated value pydicom would scan for its end".into(),
                ));
            }
            let l: [u8; 4] = self.src.take_array()?;
            scan.feed(&l);
            let len = u32_in(l, enc);
            if len == UNDEFINED {
                return Err(Error::Declined("a fragment of undefined length".into()));
            }
            self.within(len as u64, limit, "a fragment")?;
            self.src.skip_scanning(len as u64, scan)?;
        }
    }

    /// Read a sequence's items: the first one searched for `node`, every
    /// one walked to its end.
    fn sequence(
        &mut self,
        enc: Encoding,
        node: Option<&Node>,
        len: u32,
        limit: u64,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::Malformed(format!(
                "sequences nested deeper than {MAX_DEPTH}"
            )));
        }
        let end = (len != UNDEFINED).then(|| self.src.position().saturating_add(len as u64));
        let limit = end.unwrap_or(limit).min(limit);
        let mut index = 0usize;
        loop {
            if let Some(end) = end {
                if self.reached(end)? {
                    return Ok(());
                }
            }
            let (tag, t) = self.tag_and_rest(enc, limit, "an item header")?;
            let item_len = u32_in([t[4], t[5], t[6], t[7]], enc);
            match tag {
                SEQUENCE_END if end.is_none() => {
                    return self.within(0, limit, "a sequence delimiter")
                }
                ITEM => {
                    let wanted = if index == 0 { node } else { None };
                    index += 1;
                    let item_end = if item_len == UNDEFINED {
                        None
                    } else {
                        self.within(item_len as u64, limit, "an item")?;
                        Some(self.src.position() + item_len as u64)
                    };
                    if item_end == Some(self.src.position()) {
                        continue;
                    }
                    let item_enc = self.item_encoding(enc)?;
                    self.dataset::<false>(
                        item_enc,
                        wanted,
                        item_end,
                        item_end.unwrap_or(limit),
                        depth,
                    )?;
                }
                _ => {
                    return Err(Error::Malformed(format!(
                        "expected an item, found {}",
                        show(tag)
                    )))
                }
            }
        }
    }
}

/// Does pydicom convert a value of this VR and length without failing?
/// Not a VR it does not know, nor a sequence, nor numbers that do not fill
/// their length; UN is converted as `dictionary` (when shorter than
/// UN_AS_BYTES), and an undefined length is not a value.
pub fn converts(vr: [u8; 2], dictionary: [u8; 2], len: u32) -> bool {
    let vr = if &vr == b"UN" && len < UN_AS_BYTES {
        dictionary
    } else {
        vr
    };
    let size = match &vr {
        _ if len == UNDEFINED || !known_vr(vr) => return false,
        b"SQ" => return false,
        b"US" | b"SS" => 2,
        b"UL" | b"SL" | b"FL" | b"AT" => 4,
        b"FD" | b"SV" | b"UV" => 8,
        _ => 1,
    };
    len % size == 0
}

/// A declared length as a number of bytes; an undefined one as none (its
/// end is found by reading).
fn defined(len: u32) -> u64 {
    if len == UNDEFINED {
        0
    } else {
        len as u64
    }
}

#[cold]
fn past_end(what: &str, limit: u64) -> Error {
    Error::Malformed(format!(
        "{what} runs past the end of its item or sequence at byte {limit}"
    ))
}

fn pixel_representation() -> Error {
    Error::Declined("a PixelRepresentation pydicom cannot convert beside a wanted sequence".into())
}

fn charset_refused() -> Error {
    Error::Declined("a character set value pydicom cannot read".into())
}

/// Looks for a 4-byte pattern in bytes fed to it in order.
pub struct Scan {
    pub pattern: [u8; 4],
    window: u32,
    /// Bytes fed so far, up to 4.
    fed: u8,
    pub found: bool,
}

impl Scan {
    pub fn new(pattern: [u8; 4]) -> Scan {
        Scan {
            pattern,
            window: 0,
            fed: 0,
            found: false,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.found {
            return;
        }
        let want = u32::from_be_bytes(self.pattern);
        for &b in bytes {
            self.window = (self.window << 8) | b as u32;
            self.fed = self.fed.saturating_add(1);
            if self.fed >= 4 && self.window == want {
                self.found = true;
                return;
            }
        }
    }
}
