//! The reader on hand-built byte strings: each syntax, undefined lengths,
//! nesting, early stop, truncation and damage.

use std::io::Write;

use crate::dicom::elements::{Collected, Encoding, MAX_DEPTH};
use crate::dicom::error::Error;
use crate::dicom::reader::read_bytes;
use crate::extract::fields::index_of;
use crate::extract::record::{Outcome, Record, Value};
use crate::extract::schema::Schema;
use crate::testbytes::{self, DataSetWriter, UNDEF};

pub(crate) const fn t(g: u16, e: u16) -> u32 {
    ((g as u32) << 16) | e as u32
}

/// A Part 10 file of a CT image (no SOP instance in the meta group).
pub(crate) fn part10(ts: &str, body: &[u8]) -> Vec<u8> {
    testbytes::part10(ts, body, "1.2.840.10008.5.1.4.1.1.2", None)
}

/// A CT-ish data set with one wanted sequence of two items.
pub(crate) fn ct(enc: Encoding) -> Vec<u8> {
    let mut w = DataSetWriter::new(enc);
    w.el(t(0x0008, 0x0005), b"CS", "ISO_IR 100")
        .el(t(0x0008, 0x0016), b"UI", "1.2.840.10008.5.1.4.1.1.2")
        .el(t(0x0008, 0x0018), b"UI", "1.2.3.4.5")
        .el(t(0x0008, 0x0060), b"CS", "CT")
        .el(t(0x0008, 0x103E), b"LO", "Thorax ");
    // ReferencedImageSequence, undefined length, two undefined-length items.
    w.head(t(0x0008, 0x1140), b"SQ", UNDEF).item(UNDEF);
    w.el(t(0x0008, 0x1150), b"UI", "1.2.840.10008.5.1.4.1.1.2")
        .el(t(0x0008, 0x1155), b"UI", "9.8.7");
    w.item_end()
        .item(UNDEF)
        .el(t(0x0008, 0x1155), b"UI", "second.item")
        .item_end()
        .seq_end();
    w.el(t(0x0010, 0x0020), b"LO", "PAT\u{e9}1")
        .el(t(0x0020, 0x000D), b"UI", "1.2.3")
        .el(t(0x0020, 0x000E), b"UI", "1.2.3.4")
        .el(t(0x0020, 0x0012), b"IS", "2")
        .el(t(0x0020, 0x0037), b"DS", "1\\0\\0\\0\\1\\0")
        .el(t(0x0020, 0x0052), b"UI", "1.2.3.9");
    w.into_bytes()
}

pub(crate) fn read(bytes: &[u8]) -> Result<Record, String> {
    read_with(&Schema::new(Vec::new())?, bytes)
}

fn read_with(schema: &Schema, bytes: &[u8]) -> Result<Record, String> {
    match read_bytes(schema, bytes, &mut Collected::default()) {
        Ok(Outcome::Indexed(r)) => Ok(r),
        Ok(Outcome::Skipped { reason, .. }) => Err(reason.to_string()),
        Err(e) => Err(format!("{}: {}", e.reason(), e)),
    }
}

fn field<'r>(r: &'r Record, name: &str) -> &'r Value {
    &r.values[index_of(name).expect("known field")]
}

fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}

fn check_ct(r: &Record, ts: &str) {
    assert_eq!(field(r, "series"), &s("1.2.3.4"));
    assert_eq!(field(r, "series_description"), &s("Thorax"));
    assert_eq!(field(r, "modality"), &s("CT"));
    assert_eq!(field(r, "subseries"), &s("2"));
    assert_eq!(field(r, "reference_ct"), &s("9.8.7"));
    assert_eq!(field(r, "reference_frame"), &s("1.2.3.9"));
    assert_eq!(
        field(r, "orientation"),
        &Value::Nums(Some(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
    );
    assert_eq!(field(r, "transfer_syntax"), &s(ts));
}

#[test]
fn explicit_little_endian() {
    let r = read(&part10("1.2.840.10008.1.2.1", &ct(Encoding::EXPLICIT_LE))).unwrap();
    check_ct(&r, "1.2.840.10008.1.2.1");
}

#[test]
fn implicit_little_endian() {
    let r = read(&part10("1.2.840.10008.1.2", &ct(Encoding::IMPLICIT_LE))).unwrap();
    check_ct(&r, "1.2.840.10008.1.2");
}

#[test]
fn explicit_big_endian() {
    let r = read(&part10("1.2.840.10008.1.2.2", &ct(Encoding::EXPLICIT_BE))).unwrap();
    check_ct(&r, "1.2.840.10008.1.2.2");
}

#[test]
fn deflated() {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&ct(Encoding::EXPLICIT_LE)).unwrap();
    let r = read(&part10("1.2.840.10008.1.2.1.99", &z.finish().unwrap())).unwrap();
    check_ct(&r, "1.2.840.10008.1.2.1.99");
}

#[test]
fn encapsulated_syntax_reads_header_as_explicit_le() {
    let r = read(&part10(
        "1.2.840.10008.1.2.4.80",
        &ct(Encoding::EXPLICIT_LE),
    ))
    .unwrap();
    check_ct(&r, "1.2.840.10008.1.2.4.80");
}

#[test]
fn bare_data_sets_without_preamble_or_meta() {
    check_ct(
        &read(&ct(Encoding::IMPLICIT_LE)).unwrap(),
        "1.2.840.10008.1.2",
    );
    check_ct(
        &read(&ct(Encoding::EXPLICIT_LE)).unwrap(),
        "1.2.840.10008.1.2.1",
    );
    check_ct(
        &read(&ct(Encoding::EXPLICIT_BE)).unwrap(),
        "1.2.840.10008.1.2.2",
    );
}

#[test]
fn latin1_text_is_decoded() {
    // "PAT\u{e9}1" was written as UTF-8 bytes; read as ISO_IR 100 it is
    // the two latin-1 characters of those bytes, as pydicom reads them.
    let r = read(&ct(Encoding::EXPLICIT_LE)).unwrap();
    assert_eq!(field(&r, "patient_ID"), &s("PAT\u{c3}\u{a9}1"));
}

#[test]
fn stops_before_what_cannot_be_wanted() {
    let mut body = ct(Encoding::EXPLICIT_LE);
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    // Pixel data claiming far more bytes than there are, then garbage.
    w.head(t(0x7FE0, 0x0010), b"OW", 0x7FFF_FFF0)
        .raw(b"garbage that is never read");
    body.extend_from_slice(w.bytes());
    check_ct(&read(&body).unwrap(), "1.2.840.10008.1.2.1");
}

#[test]
fn skips_unwanted_values_and_sequences() {
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0018), b"UI", "1.2");
    // An unwanted private sequence of undefined length holding encapsulated
    // data of undefined length, and a large OB value.
    w.head(t(0x0009, 0x1010), b"SQ", UNDEF).item(UNDEF);
    w.head(t(0x0009, 0x0010), b"OB", UNDEF)
        .item(4)
        .raw(&[1, 2, 3, 4])
        .seq_end();
    w.item_end().seq_end();
    w.head(t(0x0019, 0x1010), b"OB", 40_000)
        .raw(&vec![0xAB; 40_000]);
    w.el(t(0x0020, 0x000E), b"UI", "5.6");
    let r = read(w.bytes()).unwrap();
    assert_eq!(field(&r, "series"), &s("5.6"));
    assert_eq!(field(&r, "instance_uid"), &s("1.2"));
}

#[test]
fn rtstruct_reference_chain_in_defined_length_items() {
    // (3006,0010)[0] > (3006,0012)[0] > (3006,0014)[0] > (0020,000E),
    // all with defined lengths, built inside out.
    let leaf = {
        let mut w = DataSetWriter::new(Encoding::IMPLICIT_LE);
        w.el(t(0x0020, 0x000E), b"UI", "ct.series");
        w.into_bytes()
    };
    let wrap = |tag: u32, inner: &[u8], before: &[u8]| {
        let mut item = before.to_vec();
        let mut w = DataSetWriter::new(Encoding::IMPLICIT_LE);
        w.head(tag, b"SQ", inner.len() as u32 + 8)
            .item(inner.len() as u32)
            .raw(inner);
        item.extend_from_slice(w.bytes());
        item
    };
    let series = wrap(t(0x3006, 0x0014), &leaf, &[]);
    let study = wrap(t(0x3006, 0x0012), &series, &[]);
    let mut frame = DataSetWriter::new(Encoding::IMPLICIT_LE);
    frame.el(t(0x0020, 0x0052), b"UI", "frame.uid");
    let top = wrap(t(0x3006, 0x0010), &study, frame.bytes());
    let mut w = DataSetWriter::new(Encoding::IMPLICIT_LE);
    w.el(t(0x0008, 0x0060), b"CS", "RTSTRUCT")
        .el(t(0x0020, 0x000E), b"UI", "rs.series")
        .raw(&top);
    let r = read(w.bytes()).unwrap();
    assert_eq!(field(&r, "reference_ct"), &s("ct.series"));
    assert_eq!(field(&r, "reference_frame"), &s("frame.uid"));
}

#[test]
fn un_sequence_of_undefined_length_is_implicit_le() {
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0060), b"CS", "SEG");
    w.head(t(0x0008, 0x1115), b"UN", UNDEF).item(UNDEF);
    let mut inner = DataSetWriter::new(Encoding::IMPLICIT_LE);
    inner.el(t(0x0020, 0x000E), b"UI", "seg.ref");
    w.raw(inner.bytes()).item_end().seq_end();
    w.el(t(0x0020, 0x000E), b"UI", "seg.series");
    let r = read(w.bytes()).unwrap();
    assert_eq!(field(&r, "reference_ct"), &s("seg.ref"));
}

#[test]
fn truncation_is_an_error_not_a_record() {
    let full = part10("1.2.840.10008.1.2.1", &ct(Encoding::EXPLICIT_LE));
    for cut in [150, 200, 300, full.len() - 5] {
        let err = read(&full[..cut]).unwrap_err();
        assert!(err.starts_with("truncated"), "cut at {cut}: {err}");
    }
    // Cut inside the preamble: nothing says it is DICOM.
    assert!(read(&full[..100]).unwrap_err().starts_with("not_dicom"));
}

#[test]
fn huge_declared_lengths_are_not_trusted() {
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0016), b"UI", "1.2");
    // A UID claiming 65534 bytes that runs past the end: no UID is that
    // long, so the length is damaged (pydicom may read the rest), not cut.
    w.head(t(0x0008, 0x0018), b"UI", 0xFFFE).raw(b"1.2");
    assert!(read(w.bytes()).unwrap_err().starts_with("malformed"));
    // A UID of a plausible length cut by the end of the file: truncated.
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0016), b"UI", "1.2");
    w.head(t(0x0008, 0x0018), b"UI", 64).raw(b"1.2");
    assert!(read(w.bytes()).unwrap_err().starts_with("truncated"));
    let mut w = DataSetWriter::new(Encoding::IMPLICIT_LE);
    w.el(t(0x0008, 0x0016), b"UI", "1.2");
    w.head(t(0x0008, 0x0018), b"UI", 0xF000_0000).raw(b"1.2");
    assert!(read(w.bytes()).unwrap_err().starts_with("malformed"));
    let mut w = DataSetWriter::new(Encoding::IMPLICIT_LE);
    w.el(t(0x0008, 0x0016), b"UI", "1.2");
    w.head(t(0x0009, 0x0010), b"OB", 0xF000_0000).raw(b"1.2");
    assert!(read(w.bytes()).unwrap_err().starts_with("truncated"));
}

#[test]
fn nesting_is_bounded() {
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0018), b"UI", "1.2");
    for _ in 0..MAX_DEPTH + 5 {
        w.head(t(0x0009, 0x1010), b"SQ", UNDEF).item(UNDEF);
    }
    let err = read(w.bytes()).unwrap_err();
    assert!(
        err.starts_with("malformed") && err.contains("nested"),
        "{err}"
    );
}

#[test]
fn zeros_after_a_header_are_refused_quickly() {
    let mut body = ct(Encoding::IMPLICIT_LE);
    body.truncate(40);
    body.extend_from_slice(&vec![0u8; 1 << 20]);
    let err = read(&part10("1.2.840.10008.1.2", &body)).unwrap_err();
    assert!(
        err.starts_with("malformed") || err.starts_with("truncated"),
        "{err}"
    );
}

#[test]
fn many_empty_items_end() {
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0018), b"UI", "1.2");
    w.head(t(0x0008, 0x1140), b"SQ", UNDEF);
    for _ in 0..10_000 {
        w.item(0);
    }
    w.seq_end().el(t(0x0020, 0x000E), b"UI", "3.4");
    let r = read(w.bytes()).unwrap();
    assert_eq!(field(&r, "reference_ct"), &s(""));
    assert_eq!(field(&r, "series"), &s("3.4"));
}

#[test]
fn bad_numbers_are_null_with_a_warning() {
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0060), b"CS", "MR")
        .el(t(0x0018, 0x0080), b"DS", "3000")
        .el(t(0x0018, 0x0081), b"DS", "abc")
        .el(t(0x0020, 0x000E), b"UI", "1");
    let r = read(w.bytes()).unwrap();
    assert_eq!(field(&r, "MR_repetition_time"), &Value::Num(Some(3000.0)));
    assert_eq!(field(&r, "MR_echo_time"), &Value::Num(None));
    assert_eq!(r.warnings, 1);
}

#[test]
fn objects_without_series_are_skipped_and_junk_is_not_dicom() {
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0018), b"UI", "1.2");
    assert_eq!(read(w.bytes()).unwrap_err(), "no_series_uid");
    assert!(read(b"hello, world\n")
        .unwrap_err()
        .starts_with("not_dicom"));
    assert!(read(b"").unwrap_err().starts_with("not_dicom"));
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert!(read(&junk).unwrap_err().starts_with("not_dicom"));
}

#[test]
fn iso_2022_text_is_declined() {
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0005), b"CS", "\\ISO 2022 IR 87").el(
        t(0x0008, 0x103E),
        b"LO",
        "\u{1b}$B;3ED\u{1b}(B",
    );
    w.el(t(0x0020, 0x000E), b"UI", "1");
    assert!(read(w.bytes()).unwrap_err().starts_with("unsupported"));
}

#[test]
fn errors_carry_their_reason() {
    assert_eq!(Error::Truncated(3).reason(), "truncated");
    assert_eq!(Error::NotDicom.reason(), "not_dicom");
}

// Hostile input (tests/hostile.py, fuzz/): damage in a deflated data set is
// truncation or malformation, never an I/O error, and inflating is bounded.

pub(crate) fn deflate(raw: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(raw).unwrap();
    z.finish().unwrap()
}

#[test]
fn deflated_data_set_cut_short_is_truncated() {
    let body = deflate(&ct(Encoding::EXPLICIT_LE));
    for cut in [0, 1, body.len() / 3, body.len() / 2, body.len() - 1] {
        let err = read(&part10("1.2.840.10008.1.2.1.99", &body[..cut])).unwrap_err();
        assert!(err.starts_with("truncated"), "cut at {cut}: {err}");
    }
}

#[test]
fn corrupt_deflate_stream_is_malformed() {
    let mut body = deflate(&ct(Encoding::EXPLICIT_LE));
    for b in &mut body[4..24] {
        *b ^= 0x55;
    }
    let err = read(&part10("1.2.840.10008.1.2.1.99", &body)).unwrap_err();
    assert!(
        err.starts_with("malformed") || err.starts_with("truncated"),
        "{err}"
    );
    let err = read(&part10("1.2.840.10008.1.2.1.99", &[0xFF; 64])).unwrap_err();
    assert!(err.starts_with("malformed"), "{err}");
}

#[test]
fn inflating_is_bounded() {
    // An unwanted value larger than MAX_INFLATED, then the wanted tags: a
    // few hundred KB that would inflate without end.
    let big = crate::dicom::preamble::MAX_INFLATED as u32 + (1 << 20);
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0018), b"UI", "1.2")
        .head(t(0x0009, 0x1010), b"OB", big);
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(w.bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..big >> 20 {
        z.write_all(&zeros).unwrap();
    }
    let mut tail = DataSetWriter::new(Encoding::EXPLICIT_LE);
    tail.el(t(0x0020, 0x000E), b"UI", "3.4");
    z.write_all(tail.bytes()).unwrap();
    let err = read(&part10("1.2.840.10008.1.2.1.99", &z.finish().unwrap())).unwrap_err();
    assert!(
        err.starts_with("malformed") && err.contains("inflates past"),
        "{err}"
    );
}

#[test]
fn meta_value_running_past_the_end_of_a_file_is_truncated() {
    // A meta element claiming ~4 GB, then nothing: read from a file (whose
    // skips are not checked until the end), not an empty data set.
    let mut m = DataSetWriter::new(Encoding::EXPLICIT_LE);
    m.head(t(0x0002, 0x0001), b"OB", 0xFFFF_FFF0).raw(&[0, 1]);
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    bytes.extend_from_slice(m.bytes());
    let dir = std::env::temp_dir().join(format!("fastindex-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = Schema::new(Vec::new()).unwrap();
    for (name, tail) in [("meta_4gb", &[][..]), ("meta_4gb_stray", &[1u8, 2, 3][..])] {
        let path = dir.join(name);
        let mut data = bytes.clone();
        data.extend_from_slice(tail);
        std::fs::write(&path, &data).unwrap();
        let r = crate::dicom::reader::read_path(&schema, &path, &mut Collected::default());
        assert!(
            matches!(r, Err(Error::Truncated(_))),
            "{name}: {:?}",
            r.err()
        );
        assert!(
            matches!(
                read_bytes(&schema, &data, &mut Collected::default()),
                Err(Error::Truncated(_))
            ),
            "{name} in memory"
        );
    }
    // Three stray bytes after a complete meta group: cut short as well.
    let mut data = part10("1.2.840.10008.1.2.1", &[]);
    data.extend_from_slice(&[8, 0, 0x16]);
    assert!(read(&data).unwrap_err().starts_with("truncated"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Read `bytes` from a file and from memory: the same outcome either way.
fn read_both(name: &str, bytes: &[u8]) -> (String, String) {
    let show = |r: crate::dicom::error::Result<Outcome>| match r {
        Ok(Outcome::Indexed(r)) => format!("indexed {:?}", r.values),
        Ok(Outcome::Skipped { reason, .. }) => reason.to_string(),
        Err(e) => e.reason().to_string(),
    };
    let schema = Schema::new(Vec::new()).unwrap();
    let path = std::env::temp_dir().join(format!("fastindex-test-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let from_file = show(crate::dicom::reader::read_path(
        &schema,
        &path,
        &mut Collected::default(),
    ));
    std::fs::remove_file(&path).unwrap();
    (
        from_file,
        show(read_bytes(&schema, bytes, &mut Collected::default())),
    )
}

#[test]
fn lengths_past_their_container_are_malformed_in_file_and_memory() {
    // Found by fuzz/fuzz_targets/file.rs: a wanted sequence of defined
    // length whose second (unwanted) item claims more bytes than the file
    // has. From a file and in memory, the same answer: the item's length
    // disagrees with its sequence's, which a cut file cannot do (a cut
    // leaves the lengths it kept intact), so it is malformed, not cut.
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0018), b"UI", "1.2");
    let mut first = DataSetWriter::new(Encoding::EXPLICIT_LE);
    first.el(t(0x0008, 0x1155), b"UI", "9.8.7");
    w.head(
        t(0x0008, 0x1140),
        b"SQ",
        8 + first.bytes().len() as u32 + 8 + 16,
    );
    w.item(first.bytes().len() as u32)
        .raw(first.bytes())
        .item(0xFF40)
        .raw(&[0x41; 40]);
    for (name, bytes) in [
        ("item", w.bytes().to_vec()),
        ("item_part10", part10("1.2.840.10008.1.2.1", w.bytes())),
    ] {
        let (from_file, from_memory) = read_both(name, &bytes);
        assert_eq!(from_file, "malformed", "{name}");
        assert_eq!(from_memory, "malformed", "{name}");
    }
    // An unwanted value past the end inside a wanted item of defined length.
    let mut inner = DataSetWriter::new(Encoding::EXPLICIT_LE);
    inner.head(t(0x0008, 0x1150), b"UI", 0xFFF0).raw(b"1.2");
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0018), b"UI", "1.2").head(
        t(0x0008, 0x1140),
        b"SQ",
        inner.bytes().len() as u32 + 8,
    );
    w.item(inner.bytes().len() as u32).raw(inner.bytes());
    let (from_file, from_memory) = read_both("element", &part10("1.2.840.10008.1.2.1", w.bytes()));
    assert_eq!(
        (from_file.as_str(), from_memory.as_str()),
        ("malformed", "malformed")
    );
    // A sequence whose lengths agree, cut inside its second item: bytes
    // that stop, truncated either way.
    let mut second = DataSetWriter::new(Encoding::EXPLICIT_LE);
    second.el(t(0x0008, 0x1155), b"UI", "9".repeat(40));
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0018), b"UI", "1.2");
    w.head(
        t(0x0008, 0x1140),
        b"SQ",
        8 + first.bytes().len() as u32 + 8 + second.bytes().len() as u32,
    )
    .item(first.bytes().len() as u32)
    .raw(first.bytes())
    .item(second.bytes().len() as u32)
    .raw(second.bytes());
    w.el(t(0x0020, 0x000E), b"UI", "1.2.3");
    let cut = w.bytes().len() - 30;
    let (from_file, from_memory) = read_both("cut", &w.bytes()[..cut]);
    assert_eq!(
        (from_file.as_str(), from_memory.as_str()),
        ("truncated", "truncated")
    );
}

#[test]
fn extras_are_typed_as_their_blank_says() {
    use crate::extract::schema::Extra;
    use std::mem::discriminant;
    let extra = |name: &str, tag: u32, vr: &[u8; 2], multi: bool| Extra {
        name: name.into(),
        tag,
        vr: *vr,
        multi,
    };
    let extras = vec![
        extra("ImageType", t(0x0008, 0x0008), b"CS", true),
        extra("OtherPatientNames", t(0x0010, 0x1001), b"PN", true),
        extra("KVP", t(0x0018, 0x0060), b"DS", false),
        extra("InstanceNumber", t(0x0020, 0x0013), b"IS", false),
        extra("ImageComments", t(0x0020, 0x4000), b"LT", false),
        extra("Rows", t(0x0028, 0x0010), b"US", false),
        extra("PixelSpacing", t(0x0028, 0x0030), b"DS", true),
    ];
    let schema = Schema::new(extras.clone()).unwrap();
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0008), b"CS", "ORIGINAL\\PRIMARY ")
        .el(t(0x0010, 0x1001), b"PN", "Doe^J=\\Roe")
        .el(t(0x0018, 0x0060), b"DS", "120")
        .el(t(0x0020, 0x000E), b"UI", "1.2")
        .el(t(0x0020, 0x0013), b"IS", "7")
        .el(t(0x0020, 0x4000), b"LT", "a\\b");
    w.head(t(0x0028, 0x0010), b"US", 2).u16(512);
    w.el(t(0x0028, 0x0030), b"DS", "0.5\\0.5");
    let r = read_with(&schema, w.bytes()).unwrap();
    let strs = |v: &[&str]| Value::Strs(Some(v.iter().map(|s| s.to_string()).collect()));
    assert_eq!(r.extras[0], strs(&["ORIGINAL", "PRIMARY"]));
    assert_eq!(r.extras[1], strs(&["Doe^J", "Roe"]));
    assert_eq!(r.extras[4], s("a\\b"));
    assert_eq!(r.extras[5], Value::Int(Some(512)));
    for (v, e) in r.extras.iter().zip(&extras) {
        assert_eq!(
            discriminant(v),
            discriminant(&Value::extra_blank(&e.vr, e.multi)),
            "{}",
            e.name
        );
    }
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0060), b"CS", "CT")
        .el(t(0x0020, 0x000E), b"UI", "1.2");
    let r = read_with(&schema, w.bytes()).unwrap();
    for (v, e) in r.extras.iter().zip(&extras) {
        assert_eq!(v, &Value::extra_blank(&e.vr, e.multi), "{}", e.name);
    }
}

// What pydicom reads another way: the stream reads it pydicom's way, or
// declines (tests/test_reading_rules.py checks the same against pydicom).

/// Wanted top-level elements after which a test's own elements go.
fn opening(w: &mut DataSetWriter) -> &mut DataSetWriter {
    w.el(t(0x0008, 0x0016), b"UI", "1.2.840.10008.5.1.4.1.1.7")
        .el(t(0x0008, 0x0018), b"UI", "1.2.9")
        .el(t(0x0008, 0x0060), b"CS", "OT")
}

fn closing(w: &mut DataSetWriter) -> &mut DataSetWriter {
    w.el(t(0x0010, 0x0020), b"LO", "P")
        .el(t(0x0020, 0x000D), b"UI", "1.2.3")
        .el(t(0x0020, 0x000E), b"UI", "1.2.3.4")
}

#[test]
fn un_sequence_items_written_in_explicit_vr() {
    // Hologic: (0040,0260) UN, undefined length, its item in explicit VR.
    // Read as implicit VR, `SH 02 00` is a length of 149,587: truncated.
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    closing(opening(&mut w));
    w.head(t(0x0040, 0x0260), b"UN", UNDEF).item(UNDEF);
    w.el(t(0x0008, 0x0100), b"SH", "T1")
        .el(t(0x0008, 0x0102), b"SH", "99HOLOGIC");
    w.item_end().seq_end();
    w.el(t(0x0040, 0x0275), b"LO", "");
    let r = read(&part10("1.2.840.10008.1.2.1", w.bytes())).unwrap();
    assert_eq!(field(&r, "series"), &s("1.2.3.4"));
}

#[test]
fn implicit_items_in_an_explicit_data_set() {
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    opening(&mut w);
    w.head(t(0x0008, 0x1140), b"SQ", UNDEF).item(UNDEF);
    let mut item = DataSetWriter::new(Encoding::IMPLICIT_LE);
    item.el(t(0x0008, 0x1155), b"UI", "9.8.7");
    w.raw(item.bytes()).item_end().seq_end();
    closing(&mut w);
    let r = read(w.bytes()).unwrap();
    assert_eq!(field(&r, "reference_ct"), &s("9.8.7"));
}

#[test]
fn wanted_values_stored_with_another_vr_are_declined() {
    for vr in [b"FL", b"SL", b"AT", b"OB", b"SQ", b"XY", b"PN"] {
        let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
        opening(&mut w).el(t(0x0008, 0x103E), vr, "12345678");
        closing(&mut w);
        let err = read(w.bytes()).unwrap_err();
        assert!(err.starts_with("unsupported"), "{vr:?}: {err}");
    }
    // LO and SH are the same text to pydicom; UN is the dictionary's VR.
    for vr in [b"SH", b"UN"] {
        let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
        opening(&mut w).el(t(0x0008, 0x103E), vr, "Axial ");
        closing(&mut w);
        assert_eq!(
            field(&read(w.bytes()).unwrap(), "series_description"),
            &s("Axial")
        );
    }
}

#[test]
fn a_wanted_item_is_read_to_its_end() {
    // A tag past the wanted ones, then the wanted one: declined, not a
    // blank reference_ct.
    let mut item = DataSetWriter::new(Encoding::EXPLICIT_LE);
    item.el(t(0x0008, 0x1160), b"IS", "1")
        .el(t(0x0008, 0x1155), b"UI", "9.8.7");
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    opening(&mut w)
        .head(t(0x0008, 0x1140), b"SQ", item.bytes().len() as u32 + 8)
        .item(item.bytes().len() as u32)
        .raw(item.bytes());
    closing(&mut w);
    assert!(read(w.bytes()).unwrap_err().starts_with("malformed"));
}

#[test]
fn every_item_of_a_wanted_sequence_is_read() {
    // The second item's element runs past the item: pydicom would read on
    // into the next bytes.
    let mut first = DataSetWriter::new(Encoding::EXPLICIT_LE);
    first.el(t(0x0008, 0x1155), b"UI", "9.8.7");
    let second = b"\x08\x00\x55\x11UI\x40\x001.2";
    let len = 8 + first.bytes().len() + 8 + second.len();
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    opening(&mut w)
        .head(t(0x0008, 0x1140), b"SQ", len as u32)
        .item(first.bytes().len() as u32)
        .raw(first.bytes())
        .item(second.len() as u32)
        .raw(second);
    closing(&mut w);
    assert!(read(w.bytes()).unwrap_err().starts_with("malformed"));
}

#[test]
fn encapsulated_values_end_where_pydicom_ends_them() {
    // An icon image's encapsulated pixel data inside an item: fragments up
    // to a sequence delimiter, one fragment holding the delimiter's bytes.
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    closing(opening(&mut w))
        .head(t(0x0088, 0x0200), b"SQ", UNDEF)
        .item(UNDEF);
    w.head(t(0x7FE0, 0x0010), b"OB", UNDEF)
        .item(0)
        .item(6)
        .raw(b"\xFE\xFF\xDD\xE0\0\0")
        .seq_end();
    w.item_end().seq_end();
    let r = read(w.bytes()).unwrap();
    assert_eq!(field(&r, "series"), &s("1.2.3.4"));
    // Cut after the delimiter's bytes in that fragment: pydicom's scan for
    // the delimiter would resume there; declined rather than truncated.
    let fragment_end = w.bytes().len() - 24;
    let err = read(&w.bytes()[..fragment_end - 1]).unwrap_err();
    assert!(err.starts_with("unsupported"), "{err}");
    // Cut before them: the bytes end without a delimiter, truncated.
    let err = read(&w.bytes()[..fragment_end - 4]).unwrap_err();
    assert!(err.starts_with("truncated"), "{err}");
}

#[test]
fn sop_class_from_the_meta_group() {
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0018), b"UI", "1.2.9");
    closing(&mut w);
    let r = read(&part10("1.2.840.10008.1.2.1", w.bytes())).unwrap();
    assert_eq!(field(&r, "sop_class_uid"), &s("1.2.840.10008.5.1.4.1.1.2"));
    let r = read(&part10(
        "1.2.840.10008.1.2.1",
        closing(opening(&mut DataSetWriter::new(Encoding::EXPLICIT_LE))).bytes(),
    ))
    .unwrap();
    assert_eq!(field(&r, "sop_class_uid"), &s("1.2.840.10008.5.1.4.1.1.7"));
}

#[test]
fn values_python_reads_its_own_way_are_declined() {
    for (tag, vr, value) in [
        (t(0x0020, 0x0052), b"UI", "\t1.2"),
        (t(0x0020, 0x0037), b"DS", "\t1\\0\\0\\0\\1\\0"),
        (t(0x0020, 0x0012), b"IS", "12345678901234567890"),
        (t(0x0020, 0x0012), b"IS", "1_0"),
        (t(0x0020, 0x0012), b"IS", "1.5"),
    ] {
        let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
        closing(opening(&mut w)).el(tag, vr, value);
        let err = read(w.bytes()).unwrap_err();
        assert!(err.starts_with("unsupported"), "{value:?}: {err}");
    }
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    closing(opening(&mut w)).el(t(0x0020, 0x0012), b"IS", " +007 ");
    assert_eq!(field(&read(w.bytes()).unwrap(), "subseries"), &s("+007"));
}

#[test]
fn character_sets_pydicom_fails_on_are_declined() {
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.el(t(0x0008, 0x0005), b"CS", "\0ISO_IR 100");
    closing(opening(&mut w));
    assert!(read(w.bytes()).unwrap_err().starts_with("unsupported"));
    // pydicom's spelling fixes: ISO-IR 100 is ISO_IR 100.
    assert!(matches!(
        crate::dicom::text::codec_for(Some(b"ISO-IR 192")),
        Ok(crate::dicom::text::TextCodec::Utf8)
    ));
    // A leading space is not trimmed (pydicom asks Python's codecs).
    assert!(crate::dicom::text::codec_for(Some(b" ISO_IR 192")).is_err());
}

#[test]
fn command_group_is_read_apart_in_implicit_vr() {
    let mut c = DataSetWriter::new(Encoding::IMPLICIT_LE);
    c.head(t(0x0000, 0x0000), b"UL", 4).u32(8);
    c.el(t(0x0000, 0x0002), b"UI", "1.2");
    let mut body = c.bytes().to_vec();
    body.extend_from_slice(
        closing(opening(&mut DataSetWriter::new(Encoding::EXPLICIT_LE))).bytes(),
    );
    let r = read(&part10("1.2.840.10008.1.2.1", &body)).unwrap();
    assert_eq!(field(&r, "modality"), &s("OT"));
    assert_eq!(
        read(&vec![0u8; 4096]).unwrap_err(),
        "not_dicom: neither a DICOM Part 10 file nor a bare data set"
    );
}

#[test]
fn a_delimiter_across_the_end_of_its_sequence_is_malformed() {
    // A sequence of defined length whose undefined-length item ends with a
    // delimiter that straddles the sequence's end.
    let mut item = DataSetWriter::new(Encoding::EXPLICIT_LE);
    item.el(t(0x0008, 0x1155), b"UI", "9.8.7");
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    opening(&mut w)
        .head(t(0x0008, 0x1140), b"SQ", 8 + item.bytes().len() as u32 + 4)
        .item(UNDEF)
        .raw(item.bytes())
        .item_end();
    closing(&mut w);
    assert!(read(w.bytes()).unwrap_err().starts_with("malformed"));
}

#[test]
fn raw_rle_stream_is_not_dicom() {
    // An RLE frame starts with its segment count: group 0002 at byte 0,
    // but no VR after the tag.
    let mut rle = vec![2, 0, 0, 0, 0x40, 0, 0, 0, 0x9C, 7, 0, 0];
    rle.resize(64, 0);
    rle.extend((0..2000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8));
    assert!(read(&rle).unwrap_err().starts_with("not_dicom"));
    // A meta group in explicit VR without a preamble is still DICOM.
    let data = part10(
        "1.2.840.10008.1.2.1",
        closing(opening(&mut DataSetWriter::new(Encoding::EXPLICIT_LE))).bytes(),
    );
    assert!(read(&data[132..]).is_ok());
}

#[test]
fn dicomdir_named_by_sop_class_uid() {
    let mut m = DataSetWriter::new(Encoding::EXPLICIT_LE);
    m.el(t(0x0002, 0x0010), b"UI", "1.2.840.10008.1.2.1");
    let mut g = DataSetWriter::new(Encoding::EXPLICIT_LE);
    g.head(t(0x0002, 0x0000), b"UL", 4)
        .u32(m.bytes().len() as u32);
    let mut data = vec![0u8; 128];
    data.extend_from_slice(b"DICM");
    data.extend_from_slice(g.bytes());
    data.extend_from_slice(m.bytes());
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    w.head(t(0x0004, 0x1220), b"SQ", UNDEF).item(UNDEF);
    let mut record = DataSetWriter::new(Encoding::IMPLICIT_LE);
    record.el(t(0x0004, 0x1430), b"CS", "PATIENT");
    w.raw(record.bytes()).item_end().seq_end();
    w.el(t(0x0008, 0x0016), b"UI", "1.2.840.10008.1.3.10");
    data.extend_from_slice(w.bytes());
    assert_eq!(read(&data).unwrap_err(), "dicomdir");
}

#[test]
fn pixel_representation_pydicom_cannot_convert_beside_a_wanted_sequence() {
    let mut item = DataSetWriter::new(Encoding::EXPLICIT_LE);
    item.el(t(0x0008, 0x1155), b"UI", "9.8.7");
    let with_sequence = |pixel_rep: &[u8], vr: &[u8; 2]| {
        let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
        opening(&mut w)
            .head(t(0x0008, 0x1140), b"SQ", item.bytes().len() as u32 + 8)
            .item(item.bytes().len() as u32)
            .raw(item.bytes());
        closing(&mut w)
            .head(t(0x0028, 0x0103), vr, pixel_rep.len() as u32)
            .raw(pixel_rep);
        w.into_bytes()
    };
    for (vr, value) in [(b"UL", &b"\0\0"[..]), (b"QS", b"\0\0"), (b"US", b"\0")] {
        let err = read(&with_sequence(value, vr)).unwrap_err();
        assert!(err.starts_with("unsupported"), "{vr:?}: {err}");
    }
    let r = read(&with_sequence(b"\x01\0", b"US")).unwrap();
    assert_eq!(field(&r, "reference_ct"), &s("9.8.7"));
    // No wanted sequence beside it: pydicom never converts it.
    let mut w = DataSetWriter::new(Encoding::EXPLICIT_LE);
    closing(opening(&mut w))
        .head(t(0x0028, 0x0103), b"QS", 2)
        .raw(b"\0\0");
    assert!(read(w.bytes()).is_ok());
}

#[test]
fn an_item_delimiter_after_the_meta_group_is_declined() {
    let mut data = part10("1.2.840.10008.1.2.1", &[]);
    data.extend_from_slice(b"\xfe\xff\x0d\xe0UI\0\0");
    data.extend_from_slice(
        closing(opening(&mut DataSetWriter::new(Encoding::EXPLICIT_LE))).bytes(),
    );
    assert!(read(&data).unwrap_err().starts_with("unsupported"));
}
