//! One file's collected bytes to one per-file record, field by field from
//! the table, or the reason the file is not an instance.

use crate::dicom::elements::Collected;
use crate::dicom::error::{Error, Result};
use crate::dicom::preamble::{FileInfo, MEDIA_STORAGE_DIRECTORY};
use crate::dicom::text::{
    codec_for, decode_text, latin1, parse_ds_values, python_strips, trim, trim_values, Numbers,
    TextCodec,
};
use crate::extract::fields::{Kind, FIELDS};
use crate::extract::schema::Schema;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Num(Option<f64>),
    Nums(Option<Vec<f64>>),
    Int(Option<i64>),
    Ints(Option<Vec<i64>>),
    /// Several text values (an extra tag whose dictionary VM allows more
    /// than one); None when absent.
    Strs(Option<Vec<String>>),
    /// Computed later (file_path, folder, instances).
    Computed,
}

impl Value {
    pub fn as_str(&self) -> &str {
        match self {
            Value::Str(s) => s,
            _ => "",
        }
    }

    /// An extra tag's value when absent, which is also its type: DS, FD, FL
    /// are floats; IS, US, SS, UL, SL integers; other VRs text (ST, LT, UT
    /// hold one value whatever their backslashes). A list of them when the
    /// dictionary allows several values. `Ctx::extra` reads each VR so.
    pub fn extra_blank(vr: &[u8; 2], multi: bool) -> Value {
        match (vr, multi) {
            (b"DS" | b"FD" | b"FL", false) => Value::Num(None),
            (b"DS" | b"FD" | b"FL", true) => Value::Nums(None),
            (b"IS" | b"US" | b"SS" | b"UL" | b"SL", false) => Value::Int(None),
            (b"IS" | b"US" | b"SS" | b"UL" | b"SL", true) => Value::Ints(None),
            (b"ST" | b"LT" | b"UT", _) | (_, false) => Value::Str(String::new()),
            (_, true) => Value::Strs(None),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Record {
    /// One value per entry of `FIELDS`.
    pub values: Vec<Value>,
    /// One value per extra tag of the schema.
    pub extras: Vec<Value>,
    /// Values that were present but did not parse.
    pub warnings: u32,
}

impl Record {
    pub fn get(&self, field: usize) -> &str {
        self.values[field].as_str()
    }
}

/// What became of a file that was read.
pub enum Outcome {
    Indexed(Record),
    /// A DICOM object that is not an instance of a series.
    Skipped {
        reason: &'static str,
        message: String,
    },
}

/// Per-file constants: the character set is read once.
struct Ctx<'c> {
    out: &'c Collected,
    codec: Result<TextCodec>,
    little: bool,
    warnings: u32,
}

const TEXT_VRS: [&[u8; 2]; 7] = [b"SH", b"LO", b"ST", b"LT", b"UT", b"PN", b"UC"];
const STRING_VRS: [&[u8; 2]; 10] = [
    b"AE", b"AS", b"CS", b"DA", b"DS", b"DT", b"IS", b"TM", b"UI", b"UR",
];

impl Ctx<'_> {
    /// A slot's value as text, decoded as pydicom decodes that VR.
    fn text(&self, slot: usize) -> Result<Option<String>> {
        let Some((vr, bytes)) = self.out.get(slot) else {
            return Ok(None);
        };
        if bytes.is_ascii() && !bytes.contains(&0x1B) {
            return Ok(Some(latin1(bytes)));
        }
        if TEXT_VRS.contains(&&vr) {
            let codec = match &self.codec {
                Ok(c) => *c,
                Err(e) => return Err(Error::Declined(e.to_string())),
            };
            return decode_text(bytes, codec).map(Some);
        }
        if STRING_VRS.contains(&&vr) {
            return Ok(Some(latin1(bytes)));
        }
        Err(Error::Declined(format!(
            "a wanted value is stored with VR {}",
            latin1(&vr)
        )))
    }

    /// First non-empty trimmed text among the sources. `how` says how
    /// pydicom makes text of the value (see `Strip`).
    fn first_text(&self, slots: &[usize], how: Strip) -> Result<String> {
        for &slot in slots {
            // The common case, one value of printable ASCII: trim the
            // bytes, then make the one string.
            if let Some((_, bytes)) = self.out.get(slot) {
                if bytes.is_ascii() && !bytes.contains(&b'\\') && !bytes.contains(&0x1B) {
                    let t = trim(std::str::from_utf8(bytes).unwrap_or_default());
                    if !how.same(t) {
                        how.check(t)?;
                    }
                    if !t.is_empty() {
                        return Ok(t.to_owned());
                    }
                    continue;
                }
            }
            if let Some(t) = self.text(slot)? {
                how.check(&t)?;
                let t = trim_values(&t);
                if !t.is_empty() {
                    return Ok(t);
                }
            }
        }
        Ok(String::new())
    }

    fn numbers(&mut self, slot: usize) -> Result<Option<Vec<f64>>> {
        let Some(t) = self.text(slot)? else {
            return Ok(None);
        };
        match parse_ds_values(&t) {
            Numbers::Foreign => Err(Error::Declined(format!(
                "a number pydicom reads its own way: {t:?}"
            ))),
            Numbers::Absent => Ok(None),
            Numbers::Bad => {
                self.warnings += 1;
                Ok(None)
            }
            Numbers::Values(v) => Ok(Some(v)),
        }
    }

    fn field(&mut self, kind: Kind, slots: &[usize], info: &FileInfo) -> Result<Value> {
        Ok(match kind {
            Kind::Text | Kind::Code => Value::Str(self.first_text(slots, Strip::Spaces)?),
            Kind::Uid => Value::Str(self.first_text(slots, Strip::Python)?),
            Kind::Subseries => {
                let t = self.first_text(slots, Strip::Integer)?;
                Value::Str(if t.is_empty() {
                    crate::extract::fields::DEFAULT_SUBSERIES.into()
                } else {
                    t
                })
            }
            Kind::Number => Value::Num(match self.numbers(slots[0])? {
                Some(v) if v.len() == 1 => Some(v[0]),
                Some(_) => {
                    self.warnings += 1;
                    None
                }
                None => None,
            }),
            Kind::Numbers => Value::Nums(self.numbers(slots[0])?),
            Kind::TransferSyntax => Value::Str(info.transfer_syntax.clone()),
            Kind::Count
            | Kind::Folder
            | Kind::Path
            | Kind::ReferenceSeries
            | Kind::ReferenceModality => Value::Computed,
        })
    }

    /// An extra tag, typed by its dictionary VR as `Value::extra_blank`
    /// says: one value, or a list when the dictionary allows several.
    fn extra(&mut self, slot: usize, vr: [u8; 2], multi: bool) -> Result<Value> {
        if self.out.get(slot).is_none() {
            return Ok(Value::extra_blank(&vr, multi));
        }
        Ok(match &vr {
            b"DS" => {
                let v = self.numbers(slot)?;
                self.shape_floats(v, multi)
            }
            b"IS" => {
                let v = match self.text(slot)? {
                    Some(t) if !trim(&t).is_empty() => {
                        Strip::Integer.check(&t)?;
                        let parsed: Option<Vec<i64>> =
                            trim(&t).split('\\').map(|p| trim(p).parse().ok()).collect();
                        self.warnings += parsed.is_none() as u32;
                        parsed
                    }
                    _ => None,
                };
                self.shape_ints(v, multi)
            }
            b"FD" | b"FL" => {
                let v: Option<Vec<f64>> = self.binary(slot, &vr).map(|words| {
                    words
                        .into_iter()
                        .map(|w| {
                            if &vr == b"FD" {
                                f64::from_bits(w)
                            } else {
                                f32::from_bits(w as u32) as f64
                            }
                        })
                        .collect()
                });
                // JSON has no NaN or infinity: such a value does not parse.
                let v = match v {
                    Some(v) if v.iter().any(|x| !x.is_finite()) => {
                        self.warnings += 1;
                        None
                    }
                    other => other,
                };
                self.shape_floats(v, multi)
            }
            b"US" | b"SS" | b"UL" | b"SL" => {
                let v = self.binary(slot, &vr).map(|words| {
                    words
                        .into_iter()
                        .map(|w| match &vr {
                            b"SS" => w as u16 as i16 as i64,
                            b"SL" => w as u32 as i32 as i64,
                            _ => w as i64,
                        })
                        .collect()
                });
                self.shape_ints(v, multi)
            }
            b"ST" | b"LT" | b"UT" => Value::Str(
                self.text(slot)?
                    .map(|t| trim(&t).to_owned())
                    .unwrap_or_default(),
            ),
            _ => {
                // Empty trailing component groups of a name mean nothing (and
                // pydicom drops them).
                let one = |v: &str| {
                    if &vr == b"PN" {
                        v.trim_end_matches('=')
                    } else {
                        v
                    }
                    .to_owned()
                };
                let how = if &vr == b"UI" {
                    Strip::Python
                } else {
                    Strip::Spaces
                };
                let t = self.first_text(&[slot], how)?;
                if multi {
                    Value::Strs((!t.is_empty()).then(|| t.split('\\').map(one).collect()))
                } else {
                    Value::Str(one(&t))
                }
            }
        })
    }

    /// The raw words of a binary value, in the file's byte order.
    fn binary(&self, slot: usize, vr: &[u8; 2]) -> Option<Vec<u64>> {
        let (_, b) = self.out.get(slot)?;
        let size = match vr {
            b"FD" => 8,
            b"FL" | b"UL" | b"SL" => 4,
            _ => 2,
        };
        Some(
            b.chunks_exact(size)
                .map(|c| {
                    let mut a = [0u8; 8];
                    if self.little {
                        a[..size].copy_from_slice(c);
                        u64::from_le_bytes(a)
                    } else {
                        a[8 - size..].copy_from_slice(c);
                        u64::from_be_bytes(a)
                    }
                })
                .collect(),
        )
    }

    fn shape_floats(&mut self, v: Option<Vec<f64>>, multi: bool) -> Value {
        self.shape(v, multi, Value::Num, Value::Nums)
    }

    fn shape_ints(&mut self, v: Option<Vec<i64>>, multi: bool) -> Value {
        self.shape(v, multi, Value::Int, Value::Ints)
    }

    /// One value, or a list when the dictionary allows several; several
    /// where one is allowed do not parse (null, and a warning).
    fn shape<T: Copy>(
        &mut self,
        v: Option<Vec<T>>,
        multi: bool,
        one: fn(Option<T>) -> Value,
        many: fn(Option<Vec<T>>) -> Value,
    ) -> Value {
        let v = v.filter(|v| !v.is_empty());
        if multi {
            return many(v);
        }
        one(match v {
            Some(v) if v.len() == 1 => Some(v[0]),
            Some(_) => {
                self.warnings += 1;
                None
            }
            None => None,
        })
    }
}

/// How pydicom turns a value into the text the record is made of, beyond
/// the trimming of spaces and NULs the dictionary asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strip {
    /// Nothing more (CS, LO, SH and the other text VRs).
    Spaces,
    /// UI and DS values are stripped of Python's white space (tabs, line
    /// ends, 0x1C-0x1F, NEL, NBSP): declined when they hold any.
    Python,
    /// IS values become Python integers first; declined unless each value
    /// is a plain integer that a float holds exactly (pydicom takes `1_0`,
    /// `1.0`, `inf` and 20-digit numbers its own ways).
    Integer,
}

impl Strip {
    /// Is one trimmed value (no backslash) read the same by pydicom?
    #[inline]
    fn same(self, p: &str) -> bool {
        match self {
            Strip::Spaces => true,
            // Python strips the ends of each value; inside, white space
            // stays in both readings. (Text here is ISO 8859-1: NEL and
            // NBSP are two bytes in UTF-8, the second being 0x85 or 0xA0.)
            Strip::Python => !python_strips(p),
            Strip::Integer => {
                if p.len() <= 15 && p.bytes().all(|b| b.is_ascii_digit()) {
                    return true;
                }
                let digits = p.strip_prefix(['+', '-']).unwrap_or(p);
                let significant = digits.trim_start_matches('0').len();
                p.is_empty()
                    || (!digits.is_empty()
                        && significant <= 15
                        && digits.bytes().all(|b| b.is_ascii_digit()))
            }
        }
    }

    fn check(self, text: &str) -> Result<()> {
        if self == Strip::Spaces || text.split('\\').all(|p| self.same(trim(p))) {
            return Ok(());
        }
        Err(Error::Declined(format!(
            "a value pydicom reads its own way: {text:?}"
        )))
    }
}

pub const SERIES: usize = 3;
const SOP_CLASS: usize = 24;

/// Build the record of a file whose header was read into `out`.
pub fn build(schema: &Schema, out: &Collected, info: &FileInfo) -> Result<Outcome> {
    let codec = codec_for(out.get(schema.charset_slot).map(|v| v.1));
    let mut ctx = Ctx {
        out,
        codec,
        little: info.little,
        warnings: 0,
    };
    let mut values = Vec::with_capacity(FIELDS.len());
    for (f, slots) in FIELDS.iter().zip(&schema.field_slots) {
        values.push(ctx.field(f.kind, slots, info)?);
    }
    debug_assert_eq!(FIELDS[SERIES].name, "series");
    // A DICOMDIR, named by the meta group or by SOPClassUID, is never an
    // instance; any other object without a series is not one either.
    // sop_class_uid is SOPClassUID, or the meta group's when that is empty.
    debug_assert_eq!(FIELDS[SOP_CLASS].name, "sop_class_uid");
    let dicomdir = info.media_sop_class == MEDIA_STORAGE_DIRECTORY
        || values[SOP_CLASS].as_str() == MEDIA_STORAGE_DIRECTORY;
    if dicomdir {
        return Ok(Outcome::Skipped {
            reason: "dicomdir",
            message: "a DICOMDIR (media storage directory), not an instance".to_owned(),
        });
    }
    if values[SERIES].as_str().is_empty() {
        return Ok(Outcome::Skipped {
            reason: "no_series_uid",
            message: "DICOM object without SeriesInstanceUID".to_owned(),
        });
    }
    let mut extras = Vec::with_capacity(schema.extras.len());
    for (e, &slot) in schema.extras.iter().zip(&schema.extra_slots) {
        extras.push(ctx.extra(slot, e.vr, e.multi)?);
    }
    Ok(Outcome::Indexed(Record {
        values,
        extras,
        warnings: ctx.warnings,
    }))
}
