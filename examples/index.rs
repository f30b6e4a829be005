//! The indexer without Python: `cargo run --release --example index --
//! PATH...` writes the subseries index of the PATHs as NDJSON on stdout,
//! the same bytes as `fastindex PATH...` for an archive the fast path reads
//! whole. There is no pydicom fallback here: files the fast path declines
//! (which the command hands to pydicom) are listed on stderr, as is every
//! other file that gave no record, and left out of the index.
//!
//! Exit codes: 0 done; 1 a PATH is missing, or the run failed; 3 done, but
//! some files needed the fallback (the index lacks them).

use std::env;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use fastindex::aggregate::Aggregator;
use fastindex::extract::schema::Schema;
use fastindex::output::{ndjson, Subseries};
use fastindex::pipeline::{falls_back, lock, Options, Pipeline};
use fastindex::sources::walk::{Filter, Root, Walk};
use fastindex::sources::Files;

fn main() -> ExitCode {
    let mut paths: Vec<PathBuf> = env::args_os().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        paths.push(PathBuf::from("."));
    }
    for p in &paths {
        if let Err(e) = p.symlink_metadata() {
            eprintln!("index: {}: {e}", p.display());
            return ExitCode::from(1);
        }
    }
    match run(&paths) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(3),
        Err(message) => {
            eprintln!("index: {message}");
            ExitCode::from(1)
        }
    }
}

/// Index `paths` to stdout; the number of files that needed the fallback.
fn run(paths: &[PathBuf]) -> Result<usize, String> {
    let schema = Arc::new(Schema::new(Vec::new())?);
    let aggregator = Arc::new(Mutex::new(Aggregator::default()));
    let walk = Walk::new(Root::given(paths, None), false, Filter::default());
    let pipeline = Pipeline::start(
        Box::new(walk),
        Arc::new(Files),
        schema.clone(),
        Some(aggregator.clone()),
        &Options::default(),
    );
    let mut declined = 0;
    for batch in pipeline {
        let batch = batch.map_err(|f| f.to_string())?;
        for p in &batch.problems {
            let fallback = falls_back(p.reason);
            declined += usize::from(fallback);
            eprintln!(
                "{}: {}{}: {}",
                p.display.to_string_lossy(),
                p.reason,
                if fallback {
                    " (needs the pydicom fallback: not indexed here)"
                } else {
                    ""
                },
                p.message
            );
        }
    }
    let aggregator = lock(&aggregator);
    let (records, _unresolved) = aggregator.records().map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(1 << 16);
    let mut stdout = io::stdout().lock();
    for s in &records {
        let sub = Subseries {
            instances: s.instances,
            links: &s.links,
        };
        let path: &OsStr = &s.path;
        ndjson::write_record(&mut out, &schema, &s.record, path, Some(sub));
        if out.len() >= 1 << 16 {
            write(&mut stdout, &mut out)?;
        }
    }
    write(&mut stdout, &mut out)?;
    Ok(declined)
}

fn write(stdout: &mut impl Write, out: &mut Vec<u8>) -> Result<(), String> {
    stdout
        .write_all(out)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    out.clear();
    Ok(())
}
