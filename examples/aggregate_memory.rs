//! Peak memory and speed of the aggregate alone, on synthetic records:
//! N subseries of F files each (default F = 1: single-file series as
//! CR/DX archives have), shaped as `bench/series_memory.py` writes them
//! (60-character UIDs, paths like DIR/d0123/PAT0030861_0123456.dcm).
//!
//!     cargo run --release --example aggregate_memory -- 2000000
//!     cargo run --release --example aggregate_memory -- 20000 100
//!
//! Prints one JSON line: peak RSS (VmHWM) before and after, bytes per
//! subseries, nanoseconds per add, and the time to sort, resolve and
//! decode every subseries record.

use std::ffi::OsString;
use std::time::Instant;

use fastindex::aggregate::Aggregator;
use fastindex::extract::fields::{Kind, FIELDS};
use fastindex::extract::record::{Record, Value};

const ROOT: &str = "1.2.826.0.1.3680043.8.498.";

fn uid(kind: u32, n: u64) -> String {
    format!("{ROOT}{kind}.1{n:031}")
}

fn template() -> Record {
    let values = FIELDS
        .iter()
        .map(|f| match (f.kind, f.name) {
            (Kind::Number, _) => Value::Num(None),
            (Kind::Numbers, _) => Value::Nums(None),
            (Kind::Count | Kind::Folder | Kind::Path, _) => Value::Computed,
            (Kind::ReferenceSeries | Kind::ReferenceModality, _) => Value::Computed,
            (_, "study_description") => Value::Str("CHEST 2 VIEWS".into()),
            (_, "series_description") => Value::Str("PA".into()),
            (_, "subseries") => Value::Str("1".into()),
            (_, "modality") => Value::Str("CR".into()),
            (_, "sop_class_uid") => Value::Str("1.2.840.10008.5.1.4.1.1.1".into()),
            (_, "transfer_syntax") => Value::Str("1.2.840.10008.1.2.1".into()),
            _ => Value::Str(String::new()),
        })
        .collect();
    Record {
        values,
        extras: Vec::new(),
        warnings: 0,
    }
}

fn index_of(name: &str) -> usize {
    FIELDS.iter().position(|f| f.name == name).unwrap_or(0)
}

/// Peak resident set of this process, in KiB.
fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let series = args.first().copied().unwrap_or(500_000);
    let per = args.get(1).copied().unwrap_or(1).max(1);
    let [patient, study, ser, sop] =
        ["patient_ID", "study", "series", "instance_uid"].map(index_of);
    let template = template();
    let before = vm_hwm();
    let mut agg = Aggregator::default();
    let started = Instant::now();
    for s in 0..series {
        for f in 0..per {
            let n = s * per + f;
            let mut r = template.clone();
            r.values[patient] = Value::Str(format!("PAT{:07}", s / 4));
            r.values[study] = Value::Str(uid(1, s));
            r.values[ser] = Value::Str(uid(2, s));
            r.values[sop] = Value::Str(uid(3, n));
            let path = format!(
                "/tmp/fastindex-series-{series}/d{:04}/PAT{:07}_{n:07}.dcm",
                n / 1000,
                s / 4
            );
            agg.add(&r, &OsString::from(path));
        }
    }
    let added = started.elapsed();
    let after_add = vm_hwm();
    let started = Instant::now();
    let Ok(done) = agg.finish() else {
        eprintln!("a representative is missing");
        std::process::exit(1);
    };
    let mut instances = 0;
    for i in 0..done.len() {
        instances += agg.subseries(&done, i).map_or(0, |s| s.instances);
    }
    let output = started.elapsed();
    let peak = vm_hwm();
    println!(
        "{{\"series\": {series}, \"files_per_series\": {per}, \"instances\": {instances}, \
         \"peak_rss_mib_before\": {:.1}, \"peak_rss_mib_after_add\": {:.1}, \"peak_rss_mib\": {:.1}, \
         \"bytes_per_series\": {}, \"ns_per_add\": {:.0}, \"output_s\": {:.2}}}",
        before as f64 / 1024.0,
        after_add as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak - before) * 1024 / series,
        added.as_nanos() as f64 / (series * per) as f64,
        output.as_secs_f64()
    );
}
