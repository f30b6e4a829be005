//! The aggregate: counts and references whatever the order, remove then
//! add equals fresh, merge in any split, order and shape equals one run,
//! and the serialized form round-trips and refuses damage without a panic.

use std::ffi::OsStr;
use std::path::Path;

use super::blob::{self, Cursor, Text};
use super::{Aggregator, Error, ExtraSig};
use crate::extract::fields::{index_of, FIELDS};
use crate::extract::record::{Outcome, Record, Value};
use crate::extract::schema::{Extra, Schema};

fn rec(series: &str, sub: &str, sop: &str, modality: &str, refs: [&str; 3], frame: &str) -> Record {
    let mut values: Vec<Value> = FIELDS.iter().map(|_| Value::Str(String::new())).collect();
    let mut set = |name: &str, v: &str| values[index_of(name).unwrap()] = Value::Str(v.into());
    set("study", "1.2.3");
    set("series", series);
    set("subseries", sub);
    set("instance_uid", sop);
    set("modality", modality);
    set("reference_ct", refs[0]);
    set("reference_rs", refs[1]);
    set("reference_pl", refs[2]);
    set("reference_frame", frame);
    values[index_of("orientation").unwrap()] = Value::Nums(Some(vec![1.0, 0.0, -0.5]));
    values[index_of("MR_echo_time").unwrap()] = Value::Num(None);
    Record {
        values,
        extras: vec![],
        warnings: 0,
    }
}

fn add_all(recs: &[(Record, &str)], order: &[usize]) -> Aggregator {
    let mut a = Aggregator::default();
    for &i in order {
        a.add(&recs[i].0, OsStr::new(recs[i].1));
    }
    a
}

/// Everything the output says, in a comparable form.
fn output(a: &Aggregator) -> (Vec<String>, u64, u64) {
    let (records, unresolved) = a.records().unwrap();
    let lines = records
        .iter()
        .map(|s| {
            format!(
                "{:?} {:?} {} {:?} {:?}",
                s.path, s.record.values, s.instances, s.links, s.record.extras
            )
        })
        .collect();
    (lines, a.duplicates(), unresolved)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

fn synthetic() -> Vec<(Record, &'static str)> {
    let none = ["", "", ""];
    vec![
        (rec("1.2.840.5", "1", "5.1", "CT", none, "9.9"), "b/1"),
        (rec("1.2.840.5", "1", "5.1", "CT", none, "9.9"), "a/1"), // a copy
        (rec("1.2.840.5", "1", "5.2", "CT", none, "9.9"), "c/2"),
        (rec("1.2.840.5", "2", "5.3", "CT", none, "9.9"), "d/3"),
        (rec("1.2.840.5", "2", "", "CT", none, "9.9"), "d/4"), // no SOP
        (rec("1.2.840.5", "2", "", "CT", none, "9.9"), "d/5"),
        (
            rec(
                "rs",
                "default",
                "rs.1",
                "RTSTRUCT",
                ["1.2.840.5", "", ""],
                "9.9",
            ),
            "e",
        ),
        (
            rec("rp", "default", "rp.1", "RTPLAN", ["", "rs.1", ""], "9.9"),
            "f",
        ),
        (
            rec(
                "rd",
                "default",
                "rd.1",
                "RTDOSE",
                ["", "rs.1", "rp.1"],
                "9.9",
            ),
            "f2",
        ),
        (rec("pt", "default", "pt.1", "PT", none, "9.9"), "g"),
        (rec("mr", "1", "mr.1", "MR", ["5.3", "", ""], ""), "h/1"),
        (rec("mr", "1", "mr.2", "MR", ["5.3", "", ""], ""), "h/0"),
        (rec("mr", "1", "mr.2", "MR", ["5.3", "", ""], ""), "h/0"), // same path twice
        // The same SOP in a second series; its own reference points out.
        (
            rec("other", "default", "5.2", "CT", ["", "", "outside"], ""),
            "i",
        ),
        (rec("Ü-ser", "default", "x.1", "OT", none, ""), "j"),
    ]
}

#[test]
fn field_indices_are_the_tables() {
    let at = |i: usize| FIELDS[i].name;
    assert_eq!(
        blob::KEY.map(at),
        ["patient_ID", "study", "series", "subseries"]
    );
    assert_eq!(at(blob::MODALITY), "modality");
    assert_eq!(at(blob::SOP), "instance_uid");
    assert_eq!(at(blob::FRAME), "reference_frame");
    assert_eq!(
        blob::REFERENCES.map(at),
        ["reference_ct", "reference_rs", "reference_pl"]
    );
    assert_eq!(blob::SERIES, crate::extract::record::SERIES);
    // What a subseries record shows from its representative is stored.
    for name in [
        "study_description",
        "orientation",
        "MR_imaged_nucleus",
        "folder",
    ] {
        let i = index_of(name).unwrap();
        assert_eq!(blob::body_fields().contains(&i), name != "folder", "{name}");
    }
    assert!(!blob::body_fields().contains(&index_of("sop_class_uid").unwrap()));
}

#[test]
fn counts_distinct_instances_and_resolves_whatever_the_order() {
    let recs = synthetic();
    let mut rng = Rng(7);
    let mut order: Vec<usize> = (0..recs.len()).collect();
    let first = output(&add_all(&recs, &order));
    for _ in 0..20 {
        rng.shuffle(&mut order);
        assert_eq!(output(&add_all(&recs, &order)), first);
    }
    let a = add_all(&recs, &order);
    assert_eq!(a.duplicates(), 2);
    let (records, unresolved) = a.records().unwrap();
    assert_eq!(unresolved, 1);
    let find = |series: &str, sub: &str| {
        records
            .iter()
            .find(|s| {
                s.record.values[3] == Value::Str(series.into())
                    && s.record.values[5] == Value::Str(sub.into())
            })
            .unwrap()
    };
    let ct1 = find("1.2.840.5", "1");
    assert_eq!((ct1.instances, ct1.path.to_str().unwrap()), (2, "a/1"));
    assert_eq!(find("1.2.840.5", "2").instances, 3); // 5.3 and two without SOP
    let rs = find("rs", "default");
    assert_eq!(
        (rs.links.series.clone(), rs.links.modalities.clone()),
        (vec!["1.2.840.5".to_string()], vec!["CT".to_string()])
    );
    assert_eq!(find("rp", "default").links.series, vec!["rs"]);
    assert_eq!(find("rd", "default").links.series, vec!["rp", "rs"]);
    assert_eq!(
        find("rd", "default").links.modalities,
        vec!["RTPLAN", "RTSTRUCT"]
    );
    assert_eq!(find("pt", "default").links.series, vec!["1.2.840.5"]);
    // The same SOP in two series resolves to the smaller series UID.
    assert_eq!(find("mr", "1").links.series, vec!["1.2.840.5"]);
    assert_eq!(
        (
            find("mr", "1").instances,
            find("mr", "1").path.to_str().unwrap()
        ),
        (2, "h/0")
    );
    assert_eq!(find("other", "default").instances, 1);
    let keys: Vec<_> = records
        .iter()
        .map(|s| (s.record.values[3].clone(), s.record.values[5].clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| {
        a.0.as_str()
            .cmp(b.0.as_str())
            .then(a.1.as_str().cmp(b.1.as_str()))
    });
    assert_eq!(keys, sorted);
}

#[test]
fn blobs_round_trip_and_packed_keys_sort_as_text() {
    let mut r = rec(
        "1.2.840.113619.2.55.3",
        "12",
        "1.3.6.1.4.1.9590.100.1.2.1",
        "MR",
        ["", "7", ""],
        "1.2",
    );
    r.values[0] = Value::Str("0123".into()); // a packable patient ID
    r.values[2] = Value::Str("Tête – 頭部".into());
    r.extras = vec![
        Value::Strs(Some(vec!["ORIGINAL".into(), "1.5".into()])),
        Value::Ints(Some(vec![-3, 512])),
        Value::Int(None),
        Value::Num(Some(2.5)),
        Value::Strs(None),
        Value::Str(String::new()),
    ];
    let mut out = Vec::new();
    blob::encode(&mut out, &r, b"some/path", r.extras.len());
    assert!(blob::check(
        &out,
        blob::body_fields().len() + r.extras.len()
    ));
    let (back, path) = blob::decode(&out, r.extras.len()).unwrap();
    assert_eq!(path, b"some/path");
    for &i in blob::KEY.iter().chain(blob::body_fields()) {
        assert_eq!(back.values[i], r.values[i], "{}", FIELDS[i].name);
    }
    assert_eq!(back.extras, r.extras);
    // Packed strings compare as the strings do, with plain ones too.
    let words = [
        "", "1", "1.", "12", "12.", "1.2", "10", "2", "9.99", ".", "..", "A", "1a", "0", "00",
    ];
    let mut bufs = Vec::new();
    for w in words {
        let mut b = Vec::new();
        blob::put_str(&mut b, w.as_bytes());
        bufs.push(b);
    }
    let texts: Vec<Text<'_>> = bufs
        .iter()
        .map(|b| {
            blob::Raw::read(&mut Cursor::new(b))
                .unwrap()
                .text()
                .unwrap()
        })
        .collect();
    for (a, ta) in words.iter().zip(&texts) {
        assert!(ta.is(a.as_bytes()));
        assert_eq!(ta.to_string_lossy(), *a);
        for (b, tb) in words.iter().zip(&texts) {
            assert_eq!(
                ta.compare(tb),
                a.as_bytes().cmp(b.as_bytes()),
                "{a:?} vs {b:?}"
            );
            assert_eq!(ta.is(b.as_bytes()), a == b);
        }
    }
}

#[test]
fn remove_then_add_equals_fresh() {
    let recs = synthetic();
    let all: Vec<usize> = (0..recs.len()).collect();
    let fresh = add_all(&recs, &all);
    let mut opened = 0;
    for i in 0..recs.len() {
        let mut a = add_all(&recs, &all);
        a.remove(&recs[i].0, OsStr::new(recs[i].1)).unwrap();
        let without: Vec<usize> = all.iter().copied().filter(|&j| j != i).collect();
        let never = add_all(&recs, &without);
        // Counts as if the file had never been added.
        assert_eq!(a.duplicates(), never.duplicates(), "file {i}");
        assert_eq!(a.len(), never.len(), "file {i}");
        let open = a.needs_representative();
        match a.records() {
            Ok(_) => assert_eq!(output(&a), output(&never), "file {i}"),
            Err(Error::NeedsRepresentative(keys)) => {
                opened += 1;
                assert_eq!(keys, open);
                // The caller offers the smallest remaining member.
                let mut b = a.clone();
                let key = |r: &Record| (r.values[3].clone(), r.values[5].clone());
                let smallest = without
                    .iter()
                    .filter(|&&j| key(&recs[j].0) == key(&recs[i].0))
                    .min_by_key(|&&j| recs[j].1)
                    .unwrap();
                b.offer(&recs[*smallest].0, OsStr::new(recs[*smallest].1))
                    .unwrap();
                assert_eq!(output(&b), output(&never), "file {i}");
                assert_eq!(b.to_bytes(), never.to_bytes(), "file {i}");
            }
            Err(e) => panic!("{e}"),
        }
        a.add(&recs[i].0, OsStr::new(recs[i].1));
        assert!(a.needs_representative().is_empty());
        assert_eq!(output(&a), output(&fresh), "file {i}");
        assert_eq!(a.to_bytes(), fresh.to_bytes(), "file {i}");
    }
    // The representatives of the three groups of several files (h/0 is
    // there twice): a/1, d/3, h/0, h/0.
    assert_eq!(opened, 4);
    // Removing everything leaves nothing; what was never added is refused.
    let mut a = add_all(&recs, &all);
    for (r, p) in &recs {
        a.remove(r, OsStr::new(p)).unwrap();
    }
    assert!(a.is_empty() && a.duplicates() == 0);
    assert_eq!(a.to_bytes(), Aggregator::default().to_bytes());
    assert!(matches!(
        a.remove(&recs[0].0, OsStr::new("b/1")),
        Err(Error::NotAdded(_))
    ));
    let mut a = add_all(&recs, &all);
    let stranger = rec("1.2.840.5", "1", "5.9", "CT", ["", "", ""], "9.9");
    assert!(matches!(
        a.remove(&stranger, OsStr::new("z")),
        Err(Error::NotAdded(_))
    ));
    assert!(matches!(
        a.offer(&stranger, OsStr::new("z")),
        Err(Error::NotAdded(_))
    ));
    assert_eq!(a.to_bytes(), fresh.to_bytes());
}

#[test]
fn open_groups_merge_in_any_order() {
    // A removed representative, then partial results: each part's floor
    // and candidates meet as minimums, whatever the order.
    let recs = synthetic();
    let all: Vec<usize> = (0..recs.len()).collect();
    let mut parts = [add_all(&recs, &all[..6]), add_all(&recs, &all[6..])];
    parts[0].remove(&recs[1].0, OsStr::new("a/1")).unwrap();
    parts[0].remove(&recs[0].0, OsStr::new("b/1")).unwrap();
    parts[1].add(&recs[0].0, OsStr::new("b/1"));
    let mut ab = parts[0].clone();
    ab.merge(parts[1].clone()).unwrap();
    let mut ba = parts[1].clone();
    ba.merge(parts[0].clone()).unwrap();
    assert_eq!(ab.to_bytes(), ba.to_bytes());
    // b/1 is back, above the floor a/1: still open until offered.
    assert_eq!(ab.needs_representative().len(), 1);
    ab.offer(&recs[0].0, OsStr::new("b/1")).unwrap();
    let want = add_all(&recs, &[0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    assert_eq!(output(&ab), output(&want));
    // A member at or under the floor closes the group by itself.
    ba.add(&recs[1].0, OsStr::new("a/1"));
    assert_eq!(output(&ba), output(&add_all(&recs, &all)));
}

/// Records of the real files in tests/data, each also under a second path
/// now and then (copies: duplicates).
fn real_records() -> Vec<(Record, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let schema = Schema::new(vec![Extra {
        name: "ImageType".into(),
        tag: 0x0008_0008,
        vr: *b"CS",
        multi: true,
    }])
    .unwrap();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let r = crate::dicom::reader::read_path(&schema, &p, &mut Default::default());
            if let Ok(Outcome::Indexed(r)) = r {
                let name = p.strip_prefix(&root).unwrap().to_str().unwrap().to_string();
                if out.len() % 3 == 0 {
                    out.push((r.clone(), format!("copy/{name}")));
                }
                out.push((r, name));
            }
        }
    }
    assert!(
        out.len() >= 30,
        "tests/data holds {} indexed files",
        out.len()
    );
    out
}

fn sigs() -> Vec<ExtraSig> {
    vec![ExtraSig {
        name: "ImageType".into(),
        tag: 0x0008_0008,
        vr: *b"CS",
        multi: true,
    }]
}

#[test]
fn merge_in_any_split_order_and_shape_equals_one_run() {
    let recs = real_records();
    let one = {
        let mut a = Aggregator::new(sigs());
        for (r, p) in &recs {
            a.add(r, OsStr::new(p));
        }
        a
    };
    let want = output(&one);
    assert!(want.1 > 0, "the copies are duplicates");
    let bytes = one.to_bytes();
    let mut rng = Rng(0x5EED);
    for round in 0..30 {
        let k = 1 + rng.below(6);
        let mut parts: Vec<Aggregator> = (0..k).map(|_| Aggregator::new(sigs())).collect();
        let mut order: Vec<usize> = (0..recs.len()).collect();
        rng.shuffle(&mut order);
        for i in order {
            let part = rng.below(k);
            parts[part].add(&recs[i].0, OsStr::new(&recs[i].1));
        }
        // Some parts go through bytes, as from another machine.
        for p in &mut parts {
            if rng.below(2) == 0 {
                *p = Aggregator::from_bytes(sigs(), &p.to_bytes()).unwrap();
            }
        }
        // Merge in a random tree: pick two, merge one into the other.
        while parts.len() > 1 {
            rng.shuffle(&mut parts);
            let b = parts.pop().unwrap();
            parts.last_mut().unwrap().merge(b).unwrap();
        }
        let merged = parts.pop().unwrap();
        assert_eq!(output(&merged), want, "round {round}");
        assert_eq!(merged.to_bytes(), bytes, "round {round}");
    }
}

#[test]
fn merge_refuses_another_schema() {
    let mut a = Aggregator::new(sigs());
    assert!(matches!(
        a.merge(Aggregator::default()),
        Err(Error::Schema(_))
    ));
    let b = Aggregator::default().to_bytes();
    assert!(matches!(
        Aggregator::from_bytes(sigs(), &b),
        Err(Error::Bytes(_))
    ));
}

fn resum(mut data: Vec<u8>) -> Vec<u8> {
    let n = data.len() - 8;
    let sum = xxhash_rust::xxh3::xxh3_64(&data[..n]);
    data[n..].copy_from_slice(&sum.to_le_bytes());
    data
}

#[test]
fn bytes_round_trip_and_damage_is_an_error() {
    let recs = synthetic();
    let mut a = add_all(&recs, &(0..recs.len()).collect::<Vec<_>>());
    a.remove(&recs[1].0, OsStr::new("a/1")).unwrap(); // an open group too
    a.add(&recs[0].0, OsStr::new("b/1"));
    let data = a.to_bytes();
    let back = Aggregator::from_bytes(vec![], &data).unwrap();
    assert_eq!(back.to_bytes(), data);
    assert_eq!(back.needs_representative(), a.needs_representative());
    assert_eq!(back.duplicates(), a.duplicates());
    for cut in 0..data.len() {
        assert!(
            Aggregator::from_bytes(vec![], &data[..cut]).is_err(),
            "cut {cut}"
        );
    }
    for i in 0..data.len() {
        for bit in [0x01, 0x80] {
            let mut d = data.clone();
            d[i] ^= bit;
            assert!(Aggregator::from_bytes(vec![], &d).is_err(), "byte {i}");
            // With a right checksum (crafted): an error or a sound aggregate.
            if let Ok(x) = Aggregator::from_bytes(vec![], &resum(d)) {
                let again = x.to_bytes();
                assert_eq!(
                    Aggregator::from_bytes(vec![], &again).unwrap().to_bytes(),
                    again
                );
                let _ = x.records();
            }
        }
    }
    assert!(Aggregator::from_bytes(vec![], b"").is_err());
    assert!(Aggregator::from_bytes(vec![], b"PK\x03\x04 not an aggregate").is_err());
    let mut other_version = data.clone();
    other_version[8] = 2;
    let e = Aggregator::from_bytes(vec![], &resum(other_version)).unwrap_err();
    assert!(e.to_string().contains("version 2"), "{e}");
}

#[test]
fn huge_counts_allocate_nothing() {
    // A header then a group count of 2^62, then a group with 2^40 SOPs.
    let empty = Aggregator::default().to_bytes();
    let head = &empty[..empty.len() - 9]; // without the group count and sum
    for tail in [
        vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40],
        vec![
            1, 1, 5, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20,
        ],
    ] {
        let mut d = head.to_vec();
        d.extend_from_slice(&tail);
        d.extend_from_slice(&[0; 8]);
        assert!(matches!(
            Aggregator::from_bytes(vec![], &resum(d)),
            Err(Error::Bytes(_))
        ));
    }
}

#[test]
fn stale_output_is_not_served() {
    let recs = synthetic();
    let mut a = add_all(&recs, &[0, 1, 2]);
    let f = a.finish().unwrap();
    assert!(a.subseries(&f, 0).is_some());
    a.add(&recs[3].0, OsStr::new(recs[3].1));
    assert!(a.subseries(&f, 0).is_none());
}
