//! The data checks end to end on generated files and the shipped `data/blobs.csv`.

use std::io::Write;
use std::path::{Path, PathBuf};

use bastion_data::drift::{DriftOptions, diff_parquet, drift_parquet};
use bastion_data::ingest::{IngestOptions, ingest};
use bastion_data::pii::{PiiKind, Redaction, redact_parquet, scan_parquet};
use bastion_data::poison::{PoisonOptions, check_parquet, class_balance};
use bastion_data::profile::{ProfileOptions, profile_parquet};
use bastion_data::schema::Kind;
use bastion_data::validate::{Constraints, suggest, validate_parquet};

fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).expect("create");
    f.write_all(body).expect("write");
    p
}

fn to_parquet(src: &Path, dir: &Path) -> PathBuf {
    let out = dir.join(format!(
        "{}.parquet",
        src.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let f = std::fs::File::create(&out).expect("create");
    ingest(src, f, &IngestOptions::default(), &|_| {}).expect("ingest");
    out
}

fn ingest_err(path: &Path) -> String {
    let mut sink = Vec::new();
    match ingest(path, &mut sink, &IngestOptions::default(), &|_| {}) {
        Ok(s) => panic!("ingested {} rows of bad input", s.rows),
        Err(e) => e.to_string(),
    }
}

#[test]
fn ingest_is_canonical_and_types_are_inferred() {
    let d = tempfile::tempdir().expect("tempdir");
    let csv = write(
        d.path(),
        "a.csv",
        b"id,score,name,flag\n1,0.5,ann,true\n2,,bob,false\n3,2.5,,true\n",
    );
    let mut one = Vec::new();
    let s = ingest(&csv, &mut one, &IngestOptions::default(), &|_| {}).expect("ingest");
    assert_eq!(s.rows, 3);
    let kinds: Vec<Kind> = s.columns.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        vec![Kind::Numeric, Kind::Numeric, Kind::Text, Kind::Boolean]
    );
    assert_eq!(
        s.source_digest,
        bastion_core::digest::Digest::of(&std::fs::read(&csv).expect("read"))
    );
    let mut two = Vec::new();
    ingest(&csv, &mut two, &IngestOptions::default(), &|_| {}).expect("ingest");
    assert_eq!(
        one, two,
        "the same input must give the same canonical bytes"
    );

    // The same rows as JSON Lines and as Parquet give the same table.
    let jsonl = write(
        d.path(),
        "a.jsonl",
        b"{\"id\":1,\"score\":0.5}\n{\"id\":2,\"score\":null}\n",
    );
    let s = ingest(&jsonl, Vec::new(), &IngestOptions::default(), &|_| {}).expect("jsonl");
    assert_eq!((s.rows, s.columns.len()), (2, 2));
    let pq = to_parquet(&csv, d.path());
    let s = ingest(&pq, Vec::new(), &IngestOptions::default(), &|_| {}).expect("parquet");
    assert_eq!(s.rows, 3);

    // A folder: files in path order, integer and float widened.
    let folder = d.path().join("parts");
    std::fs::create_dir_all(folder.join("sub")).expect("mkdir");
    write(&folder, "1.csv", b"x,y\n1,a\n");
    write(&folder.join("sub"), "2.csv", b"x,y\n2.5,b\n");
    write(&folder, ".hidden.csv", b"nonsense");
    let s = ingest(&folder, Vec::new(), &IngestOptions::default(), &|_| {}).expect("folder");
    assert_eq!(s.rows, 2);
    assert_eq!(
        s.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        vec!["1.csv", "sub/2.csv"]
    );
    assert_eq!(s.columns[0].dtype, "Float64");
}

#[test]
fn malformed_input_is_refused_with_file_and_line() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = write(d.path(), "fields.csv", b"a,b\n1,2\n3,4,5\n");
    let e = ingest_err(&p);
    assert!(
        e.contains("fields.csv") && e.contains("line 3") && e.contains("Expected 2"),
        "{e}"
    );

    let p = write(d.path(), "utf8.csv", b"a,b\n1,ok\n2,\xff\xfe\n");
    let e = ingest_err(&p);
    assert!(
        e.contains("utf8.csv") && e.contains("invalid UTF-8") && e.contains("line"),
        "{e}"
    );

    let p = write(d.path(), "empty.csv", b"");
    let e = ingest_err(&p);
    assert!(e.contains("empty.csv"), "{e}");

    let mut huge = b"a\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 2 << 20));
    let p = write(d.path(), "huge.csv", &huge);
    let mut sink = Vec::new();
    let opts = IngestOptions {
        max_line_bytes: 1 << 20,
        ..Default::default()
    };
    let e = ingest(&p, &mut sink, &opts, &|_| {})
        .expect_err("huge line")
        .to_string();
    assert!(
        e.contains("huge.csv") && e.contains("line 2 is longer than 1048576 bytes"),
        "{e}"
    );

    let p = write(d.path(), "quote.csv", b"a,b\n1,\"unterminated\n2,3\n");
    let e = ingest_err(&p);
    assert!(
        e.contains("quote.csv") && e.contains("line 2: a quoted field is never closed"),
        "{e}"
    );

    // Quotes the CSV parser reads as ordinary characters or escapes are not "unterminated".
    let p = write(
        d.path(),
        "quotes.csv",
        b"a,b\n12\" pipe,3\n\"say \"\"hi\"\"\",4\n\"multi\nline\",5\n",
    );
    let s = ingest(&p, Vec::new(), &IngestOptions::default(), &|_| {}).expect("quotes");
    assert_eq!(s.rows, 3);

    let p = write(d.path(), "dup.csv", b"a,a\n1,2\n");
    assert!(ingest_err(&p).contains("appears twice"));

    let p = write(d.path(), "bad.parquet", b"PAR1 but not really");
    assert!(ingest_err(&p).contains("bad.parquet"));

    let p = write(d.path(), "bad.jsonl", b"{\"a\":1}\n{\"a\":\n");
    assert!(ingest_err(&p).contains("bad.jsonl"));

    // Mixed types in one column are inferred as text, not an error.
    let p = write(d.path(), "mixed.csv", b"a\n1\nx\n2.5\n");
    let s = ingest(&p, Vec::new(), &IngestOptions::default(), &|_| {}).expect("mixed");
    assert_eq!(s.columns[0].kind, Kind::Text);
}

#[test]
fn profile_has_the_known_answers() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut body = String::from("v,c\n");
    for i in 1..=100 {
        let c = ["a", "b", "b", "c"][i % 4];
        if i % 10 == 0 {
            body.push_str(&format!(",{c}\n"));
        } else {
            body.push_str(&format!("{i},{c}\n"));
        }
    }
    let pq = to_parquet(&write(d.path(), "p.csv", body.as_bytes()), d.path());
    let p = profile_parquet(&pq, ProfileOptions::default(), &|_| {}).expect("profile");
    assert_eq!(p.rows, 100);
    let v = p.column("v").expect("v");
    assert_eq!(
        (v.count, v.nulls, v.distinct, v.distinct_exact),
        (90, 10, 90, true)
    );
    let n = v.numeric.as_ref().expect("numeric");
    let vals: Vec<f64> = (1..=100).filter(|i| i % 10 != 0).map(f64::from).collect();
    let mean = vals.iter().sum::<f64>() / 90.0;
    let sd = (vals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 89.0).sqrt();
    assert!((n.mean - mean).abs() < 1e-12 && (n.std - sd).abs() < 1e-12);
    assert_eq!((n.min, n.max), (1.0, 99.0));
    assert!(n.quantiles_exact);
    assert_eq!(n.histogram.counts.iter().sum::<u64>(), 90);
    assert_eq!(n.histogram.edges.len(), 21);
    let c = p.column("c").expect("c");
    assert_eq!(c.top[0].value, "b");
    assert_eq!(c.top[0].count, 50);
    let html = bastion_data::report::profile_html("p", &p);
    assert!(html.contains("<svg") && html.contains("<rect"));
}

#[test]
fn validation_reports_failures_with_examples_and_suggestions_pass() {
    let d = tempfile::tempdir().expect("tempdir");
    let csv = write(
        d.path(),
        "v.csv",
        b"id,age,country,email\n1,34,DE,a@x.io\n2,-3,FR,b@x.io\n2,150,XX,\n4,40,us,d@x.io\n",
    );
    let pq = to_parquet(&csv, d.path());
    let c = Constraints::parse(
        r#"
[dataset]
rows = { min = 10 }
[columns.id]
unique = true
[columns.age]
type = "numeric"
min = 0
max = 120
mean = { min = 30, max = 40 }
[columns.country]
allowed = ["DE", "FR", "US"]
regex = "^[A-Z]{2}$"
[columns.email]
not_null = true
max_null_fraction = 0.1
[columns.missing]
not_null = true
"#,
    )
    .expect("constraints");
    let r = validate_parquet(&pq, &c, std::time::SystemTime::now()).expect("validate");
    assert!(!r.passed);
    let get = |k: &str| {
        r.results
            .iter()
            .find(|x| x.constraint == k)
            .unwrap_or_else(|| panic!("{k} missing: {r:#?}"))
    };
    assert_eq!(get("columns.id.unique").failed_rows, 1);
    assert_eq!(get("columns.id.unique").examples[0].row, 2);
    assert_eq!(get("columns.age.min").failed_rows, 1);
    assert_eq!(
        get("columns.age.min").examples[0].value,
        serde_json::json!(-3.0)
    );
    assert_eq!(get("columns.age.max").examples[0].row, 2);
    assert!(!get("columns.age.mean").passed);
    assert_eq!(get("columns.country.allowed").failed_rows, 2);
    assert_eq!(get("columns.country.regex").failed_rows, 1);
    assert_eq!(get("columns.email.not_null").failed_rows, 1);
    assert!(!get("columns.email.max_null_fraction").passed);
    assert!(!get("dataset.rows").passed);
    assert!(!get("columns.missing").passed);
    assert!(get("columns.age.type").passed);

    // Unknown keys, bad regexes and out-of-range fractions are refused when parsed.
    assert!(Constraints::parse("[columns.a]\nnot_nul = true\n").is_err());
    assert!(Constraints::parse("[columns.a]\nregex = \"(\"\n").is_err());
    assert!(Constraints::parse("[columns.a]\nmax_null_fraction = 2\n").is_err());

    // What `suggest` proposes from a profile holds on the same data.
    let p = profile_parquet(&pq, ProfileOptions::default(), &|_| {}).expect("profile");
    let s = suggest(&p);
    let text = s.to_toml();
    let back = Constraints::parse(&text).expect("suggested constraints parse");
    let r = validate_parquet(&pq, &back, std::time::SystemTime::now()).expect("validate");
    assert!(r.passed, "{text}\n{r:#?}");
}

#[test]
fn freshness_uses_the_newest_timestamp() {
    let d = tempfile::tempdir().expect("tempdir");
    let csv = write(
        d.path(),
        "t.csv",
        b"t\n2026-01-01T00:00:00\n2026-03-01T00:00:00\n",
    );
    let pq = to_parquet(&csv, d.path());
    let c = Constraints::parse("[dataset]\nfreshness = { column = \"t\", max_age = \"7days\" }\n")
        .expect("c");
    let march_3 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_772_496_000);
    assert!(validate_parquet(&pq, &c, march_3).expect("v").passed);
    let april = march_3 + std::time::Duration::from_secs(40 * 86_400);
    assert!(!validate_parquet(&pq, &c, april).expect("v").passed);
}

/// The shipped blobs with every 10th label moved to the next class.
fn flipped_blobs(dir: &Path) -> (PathBuf, Vec<u64>) {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/blobs.csv"))
            .expect("blobs");
    let classes = ["setosa", "versicolor", "virginica"];
    let mut out = String::new();
    let mut flipped = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let row = (i - 1) as u64;
        let (feat, label) = line.rsplit_once(',').expect("label");
        let label = if row % 10 == 3 {
            flipped.push(row);
            let k = classes.iter().position(|c| *c == label).expect("class");
            classes[(k + 1) % 3]
        } else {
            label
        };
        out.push_str(&format!("{feat},{label}\n"));
    }
    (
        to_parquet(&write(dir, "flipped.csv", out.as_bytes()), dir),
        flipped,
    )
}

#[test]
fn label_noise_benchmark_finds_flipped_labels() {
    let d = tempfile::tempdir().expect("tempdir");
    let (pq, flipped) = flipped_blobs(d.path());
    let opts = PoisonOptions {
        label: Some("species".into()),
        ..Default::default()
    };
    let r = check_parquet(&pq, &opts).expect("check");
    let found: std::collections::HashSet<u64> = r.label_issues.iter().map(|i| i.row).collect();
    let truth: std::collections::HashSet<u64> = flipped.iter().copied().collect();
    let tp = found.intersection(&truth).count() as f64;
    let precision = tp / found.len().max(1) as f64;
    let recall = tp / truth.len() as f64;
    eprintln!(
        "label noise: precision {precision:.3} recall {recall:.3} ({} flagged, {} flipped)",
        found.len(),
        truth.len()
    );
    assert!(
        precision >= 0.75 && recall >= 0.75,
        "precision {precision} recall {recall}"
    );
}

#[test]
fn duplicates_conflicts_and_outliers() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut body = String::from("a,b,label\n");
    for i in 0..200 {
        body.push_str(&format!(
            "{},{},{}\n",
            10.0 + i as f64 * 0.37,
            (i % 13) as f64,
            i % 2
        ));
    }
    body.push_str("1.0,2.0,0\n1.0,2.0,1\n"); // rows 200, 201: same features, different labels
    body.push_str("3.00001,4.0,1\n3.00002,4.0,1\n"); // rows 202, 203: near duplicates
    body.push_str("1000.0,5.0,0\n"); // row 204: an outlier
    let pq = to_parquet(&write(d.path(), "dup.csv", body.as_bytes()), d.path());
    let r = check_parquet(
        &pq,
        &PoisonOptions {
            label: Some("label".into()),
            ..Default::default()
        },
    )
    .expect("check");
    assert!(
        r.exact_duplicates
            .iter()
            .any(|g| g.rows == vec![200, 201] && g.conflicting_labels),
        "{:?}",
        r.exact_duplicates
    );
    assert!(
        r.near_duplicates.iter().any(|g| g.rows == vec![202, 203]),
        "{:?}",
        r.near_duplicates
    );
    assert_eq!(
        r.outliers.first().map(|o| (o.row, o.feature.as_str())),
        Some((204, "a"))
    );

    let (shift, _) = flipped_blobs(d.path());
    let blobs = to_parquet(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/blobs.csv"),
        d.path(),
    );
    let same = class_balance(&blobs, &shift, "species").expect("balance");
    assert!(!same.drift, "a 10% rotation keeps the classes balanced");
}

#[test]
fn pii_columns_and_free_text_and_redaction() {
    let d = tempfile::tempdir().expect("tempdir");
    let csv = write(
        d.path(),
        "people.csv",
        "name,contact,note,card,dob,order_ref\n\
ann,ann@example.org,call me at +1 415 555 2671 please,4111 1111 1111 1111,1980-02-03,4111 1111 1111 1112\n\
bob,bob@example.org,nothing to see here today,5555555555554444,1975-12-30,1234567812345678\n\
cy,cy@example.com,ssn is 123-45-6789 keep safe,378282246310005,1990-07-14,000-00-0000\n"
            .as_bytes(),
    );
    let pq = to_parquet(&csv, d.path());
    let r = scan_parquet(&pq).expect("scan");
    let col = |n: &str| r.columns.iter().find(|c| c.column == n).expect("column");
    assert_eq!(col("contact").column_kind, Some(PiiKind::Email));
    assert_eq!(col("card").column_kind, Some(PiiKind::PaymentCard));
    assert_eq!(col("dob").column_kind, Some(PiiKind::DateOfBirth));
    assert!(col("note").free_text);
    let note: Vec<PiiKind> = col("note").findings.iter().map(|f| f.kind).collect();
    assert!(
        note.contains(&PiiKind::Phone) && note.contains(&PiiKind::UsSsn),
        "{note:?}"
    );
    assert!(
        col("order_ref").findings.is_empty(),
        "Luhn failures and never-issued SSNs: {:?}",
        col("order_ref")
    );
    assert!(col("name").findings.is_empty());
    assert!(
        col("contact").findings[0]
            .masked_examples
            .iter()
            .all(|e| e.contains('*'))
    );

    let out = d.path().join("redacted.parquet");
    let n = redact_parquet(
        &pq,
        std::fs::File::create(&out).expect("create"),
        Redaction::Mask,
        &[1; 32],
    )
    .expect("redact");
    assert!(n >= 11, "{n}");
    let again = scan_parquet(&out).expect("rescan");
    assert_eq!(again.pii_columns, 0, "{again:#?}");
}

#[test]
fn drift_finds_a_shift_and_not_a_copy() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut a = String::from("x,c\n");
    let mut b = String::from("x,c\n");
    for i in 0..500 {
        let u = ((i * 7919) % 500) as f64 / 500.0;
        a.push_str(&format!("{},{}\n", u, ["p", "q"][i % 2]));
        b.push_str(&format!("{},{}\n", u + 0.3, ["p", "q", "q"][i % 3]));
    }
    let pa = to_parquet(&write(d.path(), "a.csv", a.as_bytes()), d.path());
    let pb = to_parquet(&write(d.path(), "b.csv", b.as_bytes()), d.path());
    let r = drift_parquet(&pa, &pb, &DriftOptions::default()).expect("drift");
    assert!(r.dataset_drift);
    assert!(r.columns.iter().all(|c| c.drift), "{r:#?}");
    let same = drift_parquet(&pa, &pa, &DriftOptions::default()).expect("drift");
    assert!(!same.dataset_drift);
    let diff = diff_parquet(&pa, &pb, &DriftOptions::default()).expect("diff");
    assert_eq!(diff.rows, (500, 500));
    assert!(diff.added_columns.is_empty() && diff.changed_columns.is_empty());
}
