//! The symbolic pickle machine on hand-assembled pickles: every way of naming and calling a
//! global, the memo, stacked and broken pickles, and hostile input that must neither panic nor
//! grow without bound.

use bastion_scan::pickle::{self, PickleError, analyze};
use bastion_scan::{Policy, Severity};
use proptest::prelude::*;

fn policy() -> &'static Policy {
    static P: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(Policy::builtin);
    &P
}

/// (severity, subject or rule, offset) per finding, and the machine's error.
type Seen = (Vec<(Severity, String, Option<u64>)>, Option<PickleError>);

fn findings(bytes: &[u8]) -> Seen {
    let outcome = pickle::scan(bytes);
    let f = analyze::findings(&outcome, policy(), "t.pkl")
        .into_iter()
        .map(|f| (f.severity, f.subject.unwrap_or(f.rule), f.offset))
        .collect();
    (f, outcome.error)
}

fn short_unicode(s: &str) -> Vec<u8> {
    let mut v = vec![0x8c, s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

#[test]
fn protocol_0_global_and_reduce() {
    let (f, err) = findings(b"cos\nsystem\n(S'echo hi'\ntR.");
    assert_eq!(err, None);
    assert_eq!(f, vec![(Severity::Critical, "os.system".into(), Some(0))]);
}

#[test]
fn protocol_2_global_with_memo_and_tuple1() {
    let p = b"\x80\x02cbuiltins\neval\nq\x00X\x07\x00\x00\x00print()q\x01\x85q\x02Rq\x03.";
    let (f, err) = findings(p);
    assert_eq!(err, None);
    assert_eq!(
        f,
        vec![(Severity::Critical, "builtins.eval".into(), Some(2))]
    );
}

#[test]
fn stack_global_with_names_from_the_memo() {
    // "os" is memoized early, fetched back for STACK_GLOBAL later.
    let mut p = vec![0x80, 4];
    p.extend(short_unicode("os"));
    p.push(0x94); // MEMOIZE -> 0
    p.push(b'0'); // POP
    p.extend(short_unicode("posix"));
    p.push(b'0');
    p.extend(b"h\x00"); // BINGET 0 -> "os"
    p.extend(short_unicode("system"));
    let at = p.len() as u64;
    p.push(0x93); // STACK_GLOBAL
    p.extend(short_unicode("id"));
    p.push(0x85);
    p.push(b'R');
    p.push(b'.');
    let (f, err) = findings(&p);
    assert_eq!(err, None);
    assert_eq!(f, vec![(Severity::Critical, "os.system".into(), Some(at))]);
}

#[test]
fn a_computed_stack_global_is_critical() {
    // STACK_GLOBAL whose module is the result of a call.
    let mut p = vec![0x80, 4];
    p.extend(b"cbuiltins\nstr\n");
    p.extend(short_unicode("os"));
    p.push(0x85);
    p.push(b'R');
    p.extend(short_unicode("system"));
    p.push(0x93);
    p.push(b'.');
    let (f, err) = findings(&p);
    assert_eq!(err, None);
    assert!(
        f.iter()
            .any(|(s, what, _)| *s == Severity::Critical && what == "pickle.computed-import"),
        "{f:?}"
    );
}

#[test]
fn calling_a_computed_callable_and_build_on_a_global_are_flagged() {
    // getattr(numpy.ndarray, '...') then call the result; BUILD on collections.OrderedDict.
    let p = b"\x80\x02cbuiltins\ngetattr\ncnumpy\nndarray\nX\x03\x00\x00\x00abc\x86R)Rccollections\nOrderedDict\n}b.";
    let (f, err) = findings(p);
    assert_eq!(err, None);
    let rules: Vec<&str> = f.iter().map(|(_, r, _)| r.as_str()).collect();
    assert!(rules.contains(&"builtins.getattr"), "{f:?}");
    assert!(
        rules.contains(&"pickle.computed-call")
            || rules.contains(&"the result of calling builtins.getattr"),
        "{f:?}"
    );
    assert!(
        f.iter()
            .any(|(s, r, _)| *s == Severity::Critical && r == "collections.OrderedDict"),
        "{f:?}"
    );
}

#[test]
fn inst_obj_newobj_and_ext_codes() {
    let inst = b"(S'ls'\nisubprocess\ncheck_output\n.";
    assert_eq!(findings(inst).0[0].1, "subprocess.check_output");
    let obj = b"(cos\nsystem\nS'ls'\no.";
    assert_eq!(findings(obj).0[0].1, "os.system");
    let newobj = b"\x80\x02csocket\nsocket\n)\x81.";
    assert_eq!(findings(newobj).0[0].1, "socket.socket");
    let ext = b"\x80\x02\x82\x07)R.";
    let (f, _) = findings(ext);
    assert!(
        f.iter()
            .any(|(s, r, _)| *s == Severity::High && r == "ext:7"),
        "{f:?}"
    );
}

#[test]
fn benign_pickles_have_no_findings() {
    // OrderedDict([('a', 1)]) and a torch-like rebuild with a persistent id.
    let od = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00aq\x02K\x01s.";
    assert_eq!(findings(od), (vec![], None));
    let torch = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storageq\x00ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rtq\x01Rq\x02.";
    let outcome = pickle::scan(&torch[..]);
    assert_eq!(outcome.persistent_ids, 1);
    assert_eq!(findings(torch), (vec![], None));
}

#[test]
fn stacked_pickles_are_all_scanned_and_trailing_data_is_not_an_error() {
    let mut p = b"\x80\x02K\x01.".to_vec();
    p.extend(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.");
    p.extend([0xfe, 0xff, 0x00, 0x42]);
    let outcome = pickle::scan(&p[..]);
    assert_eq!(outcome.pickles, 2);
    assert_eq!(outcome.trailing_bytes, 4);
    assert_eq!(outcome.error, None);
    let (f, _) = findings(&p);
    assert_eq!(f[0].1, "os.system");
}

#[test]
fn a_broken_pickle_keeps_what_it_found_and_is_an_error() {
    let full = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.";
    for cut in [14, 20, full.len() - 1] {
        let (f, err) = findings(&full[..cut]);
        assert!(
            matches!(err, Some(PickleError::Truncated { .. })),
            "{cut}: {err:?}"
        );
        assert_eq!(f[0].1, "os.system");
    }
    let (_, err) = findings(b"\x80\x02\xffcos\nsystem\n.");
    assert!(
        matches!(err, Some(PickleError::Malformed { offset: 2, .. })),
        "{err:?}"
    );
    let (_, err) = findings(b"\x80\x02h\x05.");
    assert!(
        matches!(err, Some(PickleError::Malformed { .. })),
        "{err:?}"
    );
    // A first "pickle" that is not one at all is an error, not clean.
    let (_, err) = findings(b"R.");
    assert!(err.is_some());
}

#[test]
fn hostile_input_hits_limits_not_memory() {
    let marks = vec![b'('; pickle::MAX_STACK + 10];
    let (_, err) = findings(&marks);
    assert!(matches!(err, Some(PickleError::Limit { .. })), "{err:?}");

    // A million distinct memo keys, then more.
    let mut p = vec![0x80, 4, b'N'];
    for i in 0..(pickle::MAX_MEMO as u32 + 5) {
        p.push(b'r');
        p.extend(i.to_le_bytes());
    }
    let (_, err) = findings(&p);
    assert!(
        matches!(
            err,
            Some(PickleError::Limit {
                what: "memo size",
                ..
            })
        ),
        "{err:?}"
    );

    // Huge declared lengths are read as far as the data goes, never allocated up front.
    let (_, err) = findings(b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7fabc");
    assert!(
        matches!(err, Some(PickleError::Truncated { .. })),
        "{err:?}"
    );
    let (_, err) = findings(b"\x80\x02\x8b\xff\xff\xff\x7f");
    assert!(
        matches!(err, Some(PickleError::Truncated { .. })),
        "{err:?}"
    );
}

#[test]
fn joblib_arrays_are_skipped_as_joblib_reads_them_and_odd_dtypes_are_errors() {
    // NumpyArrayWrapper state {shape: (2,), dtype: numpy.dtype(<dtype>), numpy_array_alignment_bytes: 16}
    // followed by the padding length, padding and 2 x 8 raw bytes that are not opcodes.
    let wrapper = |dtype: &str| {
        let mut p = b"\x80\x04cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}(".to_vec();
        p.extend(short_unicode("shape"));
        p.extend(b"K\x02\x85");
        p.extend(short_unicode("dtype"));
        p.extend(b"cnumpy\ndtype\n");
        p.extend(short_unicode(dtype));
        p.extend(b"\x89\x88\x87R");
        p.extend(short_unicode("numpy_array_alignment_bytes"));
        p.extend(b"K\x10ub");
        p.push(3);
        p.extend([0xff; 3]);
        p.extend([0xfe; 16]);
        p.push(b'.');
        p
    };
    assert_eq!(findings(&wrapper("<f8")), (vec![], None));
    let (_, err) = findings(&wrapper("é8"));
    assert!(
        matches!(err, Some(PickleError::Malformed { .. })),
        "{err:?}"
    );
}

#[test]
fn deep_nesting_is_dropped_without_recursion() {
    // A million nested one-tuples, and a million chained calls of a computed callable.
    let mut p = vec![0x80, 2, b'N'];
    p.extend(std::iter::repeat_n(0x85, 1_000_000));
    p.push(b'.');
    assert_eq!(findings(&p).1, None);
    let mut p = b"\x80\x02cbuiltins\nstr\n".to_vec();
    for _ in 0..200_000 {
        p.extend(b")R");
    }
    p.push(b'.');
    let (f, err) = findings(&p);
    assert_eq!(err, None);
    assert!(
        f.iter().any(|(_, r, _)| r.contains("chain of calls")),
        "{f:?}"
    );
}

#[test]
fn many_distinct_globals_are_an_error_not_a_blind_spot() {
    let mut p = vec![0x80, 2];
    for i in 0..(pickle::MAX_EVENTS + 1) {
        p.extend(format!("cm{i}\nf\n0").as_bytes());
    }
    p.extend(b"cos\nsystem\n.");
    let outcome = pickle::scan(&p[..]);
    assert!(matches!(outcome.error, Some(PickleError::Limit { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let outcome = pickle::scan(&bytes[..]);
        let _ = analyze::findings(&outcome, policy(), "x");
    }

    #[test]
    fn opcode_soup_never_panics(ops in proptest::collection::vec(proptest::sample::select(
        b"(NtRbaeus\x93\x94\x85\x81o012ld}])".to_vec()), 0..300)) {
        let mut p = vec![0x80, 4];
        p.extend(ops);
        p.push(b'.');
        let outcome = pickle::scan(&p[..]);
        let _ = analyze::findings(&outcome, policy(), "x");
    }
}
