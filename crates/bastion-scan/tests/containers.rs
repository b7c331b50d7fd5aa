//! The container walker on archives built here: nested wrappers, member names that escape,
//! decompression bombs and nesting depth end in errors, never in memory exhaustion or "clean".

use std::io::Write;

use bastion_scan::{Limits, Policy, Scanner, Severity};

const EVIL: &[u8] = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in members {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn scanner() -> Scanner {
    Scanner::new(Policy::builtin())
}

#[test]
fn nested_wrappers_are_opened_and_locations_name_the_path() {
    let bytes = gzip(&tar("model/weights.pkl", EVIL));
    let r = scanner().scan_bytes(&bytes, "m.tgz");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.formats, ["gzip", "tar", "pickle"]);
    let f = &r.findings[0];
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.location, "m.tgz!gzip!model/weights.pkl");
    assert_eq!(f.offset, Some(2));
}

#[test]
fn escaping_member_names_are_flagged_and_still_scanned() {
    let bytes = zip(&[("../../evil.pkl", EVIL), ("ok.txt", b"hello")]);
    let r = scanner().scan_bytes(&bytes, "m.zip");
    let rules: Vec<&str> = r.findings.iter().map(|f| f.rule.as_str()).collect();
    assert!(rules.contains(&"archive.path-traversal"), "{rules:?}");
    assert!(rules.contains(&"pickle.dangerous-global"), "{rules:?}");
}

#[test]
fn a_decompression_bomb_is_an_error() {
    // A pickle whose 64 MiB of bytes compress to almost nothing: reading past them to its
    // STOP would take 64 MiB of decompression.
    let mut p = b"\x80\x04\x8e".to_vec();
    p.extend((64u64 << 20).to_le_bytes());
    p.resize(p.len() + (64 << 20), 0);
    p.push(b'.');
    let bomb = gzip(&p);
    let mut s = scanner();
    s.limits = Limits {
        max_expanded: 8 << 20,
        ..Limits::default()
    };
    let r = s.scan_bytes(&bomb, "bomb.gz");
    assert!(
        r.errors.iter().any(|e| e.message.contains("decompress")),
        "{:?}",
        r.errors
    );
}

#[test]
fn nesting_beyond_the_limit_is_an_error() {
    let mut bytes = EVIL.to_vec();
    for _ in 0..10 {
        bytes = gzip(&bytes);
    }
    let r = scanner().scan_bytes(&bytes, "deep.gz");
    assert!(
        r.errors.iter().any(|e| e.message.contains("nested deeper")),
        "{:?}",
        r.errors
    );
}

#[test]
fn data_that_is_no_model_format_is_neither_a_finding_nor_an_error() {
    for data in [&b"just some text\n"[..], &[0u8; 100][..], &[][..]] {
        let r = scanner().scan_bytes(data, "x");
        assert!(r.findings.is_empty() && r.errors.is_empty(), "{r:?}");
    }
}

#[test]
fn folders_are_walked_and_symlinks_reported_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/model.bin"), EVIL).unwrap();
    std::fs::write(dir.path().join("readme.md"), "hi").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
    let report = scanner().scan_paths(&[dir.path().to_path_buf()]);
    assert_eq!(report.files.len(), 3);
    assert_eq!(report.worst(), Some(Severity::Critical));
    assert!(report.findings().any(|f| f.rule == "file.symlink"));
    assert_eq!(report.exit_code(Severity::Medium), 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    #[test]
    fn format_headers_followed_by_garbage_never_panic(
        which in 0usize..6,
        tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
    ) {
        let prefix: &[u8] = [
            &b"\x08\x08\x12"[..],            // ONNX
            b"GGUF\x03\x00\x00\x00",           // GGUF v3
            b"\x93NUMPY\x01\x00",               // npy
            b"\x10\x00\x00\x00\x00\x00\x00\x00{",   // safetensors
            b"\x89HDF\r\n\x1a\n{\"class_name\"",  // Keras HDF5
            b"PK\x03\x04",                      // zip
        ][which];
        let mut bytes = prefix.to_vec();
        bytes.extend(tail);
        let _ = scanner().scan_bytes(&bytes, "x");
    }
}

fn seven_zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = sevenz_rust2::ArchiveWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
    for (name, data) in members {
        w.push_archive_entry(sevenz_rust2::ArchiveEntry::new_file(name), Some(*data))
            .unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn seven_zip_members_are_scanned_top_level_and_nested() {
    let bytes = seven_zip(&[("ok.bin", b"hello"), ("model/data.pkl", EVIL)]);
    let r = scanner().scan_bytes(&bytes, "m.7z");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.formats, ["7z", "pickle"]);
    assert_eq!(r.findings[0].location, "m.7z!model/data.pkl");
    assert_eq!(r.findings[0].severity, Severity::Critical);

    // Inside a gzip stream the archive is read into memory to be opened.
    let r = scanner().scan_bytes(&gzip(&bytes), "m.7z.gz");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.findings[0].location, "m.7z.gz!gzip!model/data.pkl");

    // A member whose Unix mode (7-Zip's high attribute bits) says symlink is reported, not read.
    let mut w = sevenz_rust2::ArchiveWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
    let mut link = sevenz_rust2::ArchiveEntry::new_file("model.pkl");
    link.has_windows_attributes = true;
    link.windows_attributes = 0x8000 | (0o120777 << 16);
    w.push_archive_entry(link, Some(&b"/etc/passwd"[..]))
        .unwrap();
    let r = scanner().scan_bytes(&w.finish().unwrap().into_inner(), "l.7z");
    let rules: Vec<&str> = r.findings.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(rules, ["archive.link"], "{r:?}");

    let traversal = seven_zip(&[("../evil.pkl", EVIL)]);
    let r = scanner().scan_bytes(&traversal, "t.7z");
    let rules: Vec<&str> = r.findings.iter().map(|f| f.rule.as_str()).collect();
    assert!(rules.contains(&"archive.path-traversal"), "{rules:?}");
}

#[test]
fn seven_zip_bombs_truncation_and_garbage_are_errors() {
    let big = vec![0u8; 4 << 20];
    let bytes = seven_zip(&[("zeros.bin", &big)]);
    assert!(bytes.len() < 64 << 10, "{}", bytes.len());
    let mut s = scanner();
    s.limits.max_expanded = 1 << 20;
    let r = s.scan_bytes(&bytes, "bomb.7z");
    assert!(
        r.errors.iter().any(|e| e.message.contains("limit")),
        "{:?}",
        r.errors
    );

    let good = seven_zip(&[("model/data.pkl", EVIL)]);
    for cut in [8, 32, good.len() / 2, good.len() - 1] {
        let r = scanner().scan_bytes(&good[..cut], "cut.7z");
        assert!(!r.errors.is_empty(), "cut at {cut} reported clean: {r:?}");
    }
}
