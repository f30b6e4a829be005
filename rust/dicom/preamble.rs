//! From the first byte to the data set: preamble, meta group, transfer
//! syntax (inflating a deflated data set), or a bare data set whose
//! encoding is told from its first element, as pydicom does.

use std::io::{self, Read};

use flate2::read::DeflateDecoder;

use crate::dicom::elements::{
    converts, known_vr, long_length, valid_vr, Collected, Encoding, Stream, MAX_VALUE,
};
use crate::dicom::error::{Error, Result};
use crate::dicom::input::{Source, StreamInput};
use crate::dicom::text::{latin1, python_space_byte, text_value, trim};
use crate::extract::fields::MEDIA_STORAGE_SOP_CLASS_UID;
use crate::extract::schema::Schema;

pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";
pub const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
pub const MEDIA_STORAGE_DIRECTORY: &str = "1.2.840.10008.1.3.10";

/// A deflated data set is inflated at most this far: a wanted tag beyond
/// it is not in any real file, and a small file must not cost minutes of
/// inflating (a deflate stream of zeros grows a thousandfold).
pub const MAX_INFLATED: u64 = 256 << 20;

/// What the file says about itself outside the data set proper.
#[derive(Debug, Default, Clone)]
pub struct FileInfo {
    /// From the meta group, or the syntax the bytes were read in.
    pub transfer_syntax: String,
    /// MediaStorageSOPClassUID from the meta group ("" without one).
    pub media_sop_class: String,
    /// Byte order of the data set (for binary extra tags).
    pub little: bool,
}

/// What the meta group says about the transfer syntax, as pydicom matches
/// it: the value without trailing NULs and spaces, each value then
/// stripped of white space (several values match no syntax).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// No TransferSyntaxUID: the bytes decide.
    Absent,
    Implicit,
    Explicit,
    Deflated,
    Big,
    /// Any other value (encapsulated syntaxes, empty, unknown).
    Other,
    /// White space pydicom would strip that the stream's rules do not.
    Foreign,
}

impl Syntax {
    fn of(raw: &[u8]) -> Syntax {
        let end = raw
            .iter()
            .rposition(|&b| b != 0 && b != b' ')
            .map_or(0, |i| i + 1);
        let value = &raw[..end];
        let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
        match &value[start..] {
            v if v == EXPLICIT_LE.as_bytes() => Syntax::Explicit,
            v if v == IMPLICIT_LE.as_bytes() => Syntax::Implicit,
            v if v == DEFLATED_LE.as_bytes() => Syntax::Deflated,
            v if v == EXPLICIT_BE.as_bytes() => Syntax::Big,
            v if v.iter().any(|&b| b != b' ' && python_space_byte(b)) => Syntax::Foreign,
            _ => Syntax::Other,
        }
    }
}

/// Read the header of one DICOM file from `src` into `out`.
pub fn read(src: &mut Source<'_>, schema: &Schema, out: &mut Collected) -> Result<FileInfo> {
    let result = read_header(src, schema, out);
    // A skip past the end of a file moves the position beyond it: say
    // where the bytes really stop.
    match result {
        Err(Error::Truncated(at)) => Err(Error::Truncated(src.real_end(at))),
        other => other,
    }
}

fn read_header(src: &mut Source<'_>, schema: &Schema, out: &mut Collected) -> Result<FileInfo> {
    out.reset(schema.slots);
    let part10 = matches!(src.peek(132)?, Some(b) if &b[128..132] == b"DICM");
    if part10 {
        src.skip(132)?;
    }
    let mut info = FileInfo {
        little: true,
        ..FileInfo::default()
    };
    let syntax = read_meta(src, schema, out, &mut info, part10)?;
    let bare = !part10 && syntax.is_none();
    if bare && !plausible_start(src)? {
        return Err(Error::NotDicom);
    }
    // pydicom ends the meta group at an item delimiter, taking it along,
    // and reads what follows as the data set, group 0002 or not.
    if matches!(src.peek(4)?, Some([0xFE, 0xFF, 0x0D, 0xE0])) {
        return Err(Error::Declined(
            "an item delimiter after the meta group".into(),
        ));
    }
    let mut result = read_dataset(
        src,
        schema,
        out,
        &mut info,
        syntax.unwrap_or(Syntax::Absent),
    );
    // A file's skips are checked only at its end: damage met after a skip
    // that ran past the end is the truncation's doing, as it is in memory.
    if matches!(result, Err(Error::Malformed(_))) && src.overran()? {
        result = Err(Error::Truncated(src.position()));
    }
    // A bare data set that ended, or was cut, before any wanted tag was
    // never shown to be DICOM (pydicom finds no wanted tag in it either).
    // One that broke down before is left to pydicom, which reads on.
    if bare && !out.found_any && matches!(result, Ok(()) | Err(Error::Truncated(_))) {
        return Err(Error::NotDicom);
    }
    result.map(|()| info)
}

/// The meta group: explicit VR little endian elements of group 0002. None
/// when there is none. Without a preamble, a first element in group 0002
/// that is not in explicit VR is no meta group, and no data set either:
/// not DICOM (raw RLE streams start `02 00 00 00`: two segments).
fn read_meta(
    src: &mut Source<'_>,
    schema: &Schema,
    out: &mut Collected,
    info: &mut FileInfo,
    part10: bool,
) -> Result<Option<Syntax>> {
    let mut syntax = None;
    let mut first = true;
    while let Some(b) = src.peek(6)? {
        if u16::from_le_bytes([b[0], b[1]]) != 0x0002 {
            break;
        }
        let vr = [b[4], b[5]];
        if !valid_vr(vr) {
            if first && !part10 {
                return Err(Error::NotDicom);
            }
            return Err(Error::Malformed("the meta group is not explicit VR".into()));
        }
        let h: [u8; 8] = src.take_array()?;
        let element = u16::from_le_bytes([h[2], h[3]]);
        let len = explicit_length(src, h)?;
        if len == 0xFFFF_FFFF {
            return Err(Error::Malformed(
                "undefined length in the meta group".into(),
            ));
        }
        // pydicom converts the first meta element and the group length
        // when it reads the group (and fails on a VR it does not know, or
        // numbers that do not fill their length), the two UIDs when it
        // builds a record: decline what it would read another way.
        let convert = first || element == 0x0000;
        first = false;
        // The dictionary's VR of the group length is UL; others are text.
        let dictionary = if element == 0x0000 { *b"UL" } else { *b"UI" };
        if !known_vr(vr) || (convert && !converts(vr, dictionary, len)) {
            return Err(meta_declined(element, vr, len));
        }
        let uid = element == 0x0002 || element == 0x0010;
        if !uid {
            src.skip(len as u64)?;
            syntax.get_or_insert(Syntax::Absent);
            continue;
        }
        if !(&vr == b"UI" || (&vr == b"UN" && len < 0xFFFF)) || len > MAX_VALUE {
            return Err(meta_declined(element, vr, len));
        }
        let value = src.take(len as usize)?;
        if element == 0x0010 {
            info.transfer_syntax = text_value(value);
            syntax = Some(Syntax::of(value));
        } else {
            info.media_sop_class = trim(&latin1(value)).to_owned();
            for &(tag, slot) in &schema.meta_slots {
                if tag == MEDIA_STORAGE_SOP_CLASS_UID {
                    out.put(slot, *b"UI", value);
                }
            }
            syntax.get_or_insert(Syntax::Absent);
        }
    }
    Ok(syntax)
}

fn meta_declined(element: u16, vr: [u8; 2], len: u32) -> Error {
    Error::Declined(format!(
        "meta element (0002,{element:04X}) with VR {}{} and length {len}: pydicom reads it its own way",
        vr[0] as char, vr[1] as char
    ))
}

/// The length of an explicit VR little endian element whose first eight
/// bytes are `h` (and the four after them for the long-length VRs).
fn explicit_length(src: &mut Source<'_>, h: [u8; 8]) -> Result<u32> {
    Ok(if long_length([h[4], h[5]]) {
        u32::from_le_bytes(src.take_array()?)
    } else {
        u16::from_le_bytes([h[6], h[7]]) as u32
    })
}

/// A bare data set must start like one: a small even group in one byte
/// order. Text, images and archives do not.
fn plausible_start(src: &mut Source<'_>) -> Result<bool> {
    let Some(b) = src.peek(8)? else {
        return Ok(false);
    };
    let le = u16::from_le_bytes([b[0], b[1]]);
    let be = u16::from_be_bytes([b[0], b[1]]);
    let small = |g: u16| g <= 0x0010 && g % 2 == 0;
    Ok(small(le) || (small(be) && valid_vr([b[4], b[5]])))
}

/// Pick the data set's encoding as pydicom does, and read it.
fn read_dataset(
    src: &mut Source<'_>,
    schema: &Schema,
    out: &mut Collected,
    info: &mut FileInfo,
    syntax: Syntax,
) -> Result<()> {
    if syntax == Syntax::Foreign {
        return Err(Error::Declined(
            "a transfer syntax UID with white space in it".into(),
        ));
    }
    if syntax == Syntax::Deflated {
        let inflated = Capped(DeflateDecoder::new(src.take_reader()).take(MAX_INFLATED));
        let mut src = Source::inflated(Box::new(StreamInput(inflated)));
        // pydicom reads the inflated data set as explicit VR, unless its
        // first element says otherwise.
        let explicit = match src.peek(6)? {
            Some(b) => valid_vr([b[4], b[5]]),
            None => true,
        };
        return Stream {
            src: &mut src,
            schema,
            out,
        }
        .top(Encoding {
            explicit,
            little: true,
        });
    }
    skip_command_group(src)?;
    let Some(first) = src.peek(6)?.map(|b| [b[0], b[1], b[4], b[5]]) else {
        // An empty data set: only the meta group was there. Unless a skip
        // in the meta group ran past the end, or a few bytes are left over:
        // that is a file cut short.
        if src.at_end()? {
            if info.transfer_syntax.is_empty() {
                info.transfer_syntax = IMPLICIT_LE.to_string();
            }
            return Ok(());
        }
        return Err(Error::Truncated(src.position()));
    };
    let looks_explicit = valid_vr([first[2], first[3]]);
    let known = known_vr([first[2], first[3]]);
    let big = known && u16::from_le_bytes([first[0], first[1]]) >= 1024;
    let enc = match syntax {
        // No syntax given: pydicom takes a VR it knows for explicit VR,
        // and a first group of 1024 or more, so read, for big endian.
        Syntax::Absent => Encoding {
            explicit: looks_explicit,
            little: !big,
        },
        Syntax::Implicit => Encoding {
            explicit: looks_explicit,
            little: true,
        },
        Syntax::Big => Encoding {
            explicit: looks_explicit,
            little: false,
        },
        // Every other syntax, encapsulated ones included, is explicit VR
        // little endian up to the pixel data; like pydicom, believe the bytes
        // when they disagree with the declared VR mode.
        _ => Encoding {
            explicit: looks_explicit,
            little: true,
        },
    };
    // Where the meta group names no syntax, the record names the one
    // pydicom chose before it looked at the bytes (it then reads in the
    // VR mode the first element shows, but reports its first choice).
    if info.transfer_syntax.is_empty() {
        info.transfer_syntax = match syntax {
            Syntax::Absent if !known => IMPLICIT_LE,
            Syntax::Absent if big => EXPLICIT_BE,
            _ => EXPLICIT_LE,
        }
        .to_string();
    }
    info.little = enc.little;
    Stream { src, schema, out }.top(enc)
}

/// The largest command group read: real ones hold a few elements; more is
/// damage (zeros) that pydicom reads on through, up to its own limit.
const MAX_COMMAND_GROUP: u64 = 1 << 20;

/// pydicom reads a command group (0000,eeee) before the data set, apart
/// from it: little endian, explicit VR when its first element looks so,
/// up to the first element of another group. Pass over it the same way.
fn skip_command_group(src: &mut Source<'_>) -> Result<()> {
    let explicit = match src.peek(6)? {
        Some(b) if b[0] == 0 && b[1] == 0 => valid_vr([b[4], b[5]]),
        _ => return Ok(()),
    };
    let start = src.position();
    while let Some(b) = src.peek(8)? {
        if b[0] != 0 || b[1] != 0 {
            break;
        }
        if src.position() - start > MAX_COMMAND_GROUP {
            return Err(Error::Declined("a command group of more than 1 MiB".into()));
        }
        let h: [u8; 8] = src.take_array()?;
        let len = if !explicit {
            u32::from_le_bytes([h[4], h[5], h[6], h[7]])
        } else if !valid_vr([h[4], h[5]]) {
            return Err(Error::Declined(
                "a command group pydicom reads in mixed VR".into(),
            ));
        } else {
            explicit_length(src, h)?
        };
        if len == 0xFFFF_FFFF {
            return Err(Error::Declined(
                "undefined length in a command group".into(),
            ));
        }
        src.skip(len as u64)?;
    }
    Ok(())
}

/// An inflating reader that fails, rather than ends, at MAX_INFLATED.
struct Capped<R: Read>(io::Take<R>);

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        if n == 0 && !buf.is_empty() && self.0.limit() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "inflates past {} MiB before the wanted tags",
                    MAX_INFLATED >> 20
                ),
            ));
        }
        Ok(n)
    }
}
