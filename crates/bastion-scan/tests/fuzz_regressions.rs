//! Inputs the fuzzers (`fuzz/`) once broke the scanner with, replayed through the same code
//! paths as the fuzz targets. Each must end without a panic and within the limits, and a
//! file that is not fully understood must never be reported clean.

use std::path::Path;

use bastion_scan::{Policy, Scanner};

fn inputs() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn fuzz_inputs_scan_without_panicking() {
    let inputs = inputs();
    assert!(!inputs.is_empty());
    let policy = Policy::builtin();
    let mut scanner = Scanner::new(policy.clone());
    scanner.limits.max_expanded = 16 << 20;
    scanner.limits.max_nested_archive = 4 << 20;
    for (name, bytes) in &inputs {
        let outcome = bastion_scan::pickle::scan(bytes.as_slice());
        let _ = bastion_scan::pickle::analyze::findings(&outcome, &policy, name);
        let report = scanner.scan_bytes(bytes, name);
        if name.starts_with("pickle-") {
            assert!(
                report.formats.iter().any(|f| f == "pickle"),
                "{name}: {report:?}"
            );
        }
    }
}
