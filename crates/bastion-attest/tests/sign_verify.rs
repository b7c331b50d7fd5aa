//! Signing and verifying models end to end: every key type, bundles made by `model_signing`
//! 1.1.1, tampering of each kind, malformed bundles, certificate chains, and the stability of
//! the canonical order.

use std::path::Path;

use bastion_attest::bundle::Bundle;
use bastion_attest::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use bastion_attest::hashing::{HashOptions, hash_model};
use bastion_attest::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use bastion_attest::manifest::{Manifest, Method, Mismatch, Resource, Serialization, components};
use bastion_attest::sign::{Material, sign_model, sign_statement};
use bastion_attest::statement::Statement;
use bastion_attest::verify::{Trust, VerifyError, VerifyOptions, verify_bundle, verify_model};
use proptest::prelude::*;

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// The folder `tests/data/python-model.sig` was made over by model_signing 1.1.1.
fn python_model(root: &Path) {
    write(root, "a/x", b"hi\n");
    write(root, "a-b/x", b"yo\n");
    write(root, "a.txt", b"");
}

fn model(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("model");
    python_model(&root);
    write(&root, "weights/big.bin", &vec![42u8; 3 << 20]);
    root
}

fn none(_: u64) {}

fn verify(root: &Path, bundle: &Bundle, trust: &Trust) -> Result<Manifest, VerifyError> {
    verify_model(root, bundle, trust, &VerifyOptions::default(), &none)
}

#[test]
fn every_key_type_signs_and_verifies_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = model(dir.path());
    for alg in KeyAlgorithm::ALL {
        let key = PrivateKey::generate(alg).unwrap();
        let (manifest, bundle) = sign_model(
            &root,
            &HashOptions::default(),
            &key,
            &Material::KeyHint,
            &none,
        )
        .unwrap();
        let json = bundle.to_json();
        let back = Bundle::from_json(json.as_bytes()).unwrap();
        let trust = Trust::Key(key.public_key());
        let verified = verify(&root, &back, &trust).unwrap();
        assert_eq!(verified.root_digest(), manifest.root_digest(), "{alg}");
        assert_eq!(verified.resources().len(), 4);
    }
}

#[test]
fn verifies_a_bundle_made_by_model_signing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("model");
    python_model(&root);
    let bundle = Bundle::from_json(include_bytes!("data/python-model.sig")).unwrap();
    let key = PublicKey::from_pem(include_str!("data/p256-pub.pem")).unwrap();
    let m = verify(&root, &bundle, &Trust::Key(key)).unwrap();
    assert_eq!(
        m.root_digest_hex(),
        "80375e9e4380647539f09d6e2aaa245d9c264c8a33f31163d48f5996e4a63184"
    );
    write(&root, "a-b/x", b"yo!\n");
    let key = PublicKey::from_pem(include_str!("data/p256-pub.pem")).unwrap();
    let err = verify(&root, &bundle, &Trust::Key(key)).unwrap_err();
    assert!(err.to_string().contains("a-b/x: content changed"), "{err}");
}

#[test]
fn tampering_is_reported_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let root = model(dir.path());
    let key = PrivateKey::from_pem(include_str!("data/p256-sec1.pem")).unwrap();
    let (_, bundle) = sign_model(
        &root,
        &HashOptions::default(),
        &key,
        &Material::KeyHint,
        &none,
    )
    .unwrap();
    let trust = Trust::Key(key.public_key());

    // One changed byte in a 3 MiB file.
    let mut big = std::fs::read(root.join("weights/big.bin")).unwrap();
    big[1 << 20] ^= 1;
    std::fs::write(root.join("weights/big.bin"), &big).unwrap();
    match verify(&root, &bundle, &trust) {
        Err(VerifyError::Mismatch(m)) => {
            assert!(matches!(&m[..], [Mismatch::Changed { name, .. }] if name == "weights/big.bin"))
        }
        other => panic!("{other:?}"),
    }
    big[1 << 20] ^= 1;
    std::fs::write(root.join("weights/big.bin"), &big).unwrap();
    verify(&root, &bundle, &trust).unwrap();

    // An extra file, unless unsigned files are ignored; files under .git are never counted.
    write(&root, "extra.py", b"import os");
    write(&root, ".git/HEAD", b"ref");
    match verify(&root, &bundle, &trust) {
        Err(VerifyError::Mismatch(m)) => assert_eq!(m, [Mismatch::Extra("extra.py".into())]),
        other => panic!("{other:?}"),
    }
    let lenient = VerifyOptions {
        ignore_unsigned_files: true,
        ..VerifyOptions::default()
    };
    verify_model(&root, &bundle, &trust, &lenient, &none).unwrap();
    let ignoring = VerifyOptions {
        ignore_paths: vec!["extra.py".into()],
        ..VerifyOptions::default()
    };
    verify_model(&root, &bundle, &trust, &ignoring, &none).unwrap();
    std::fs::remove_file(root.join("extra.py")).unwrap();

    // A removed file.
    std::fs::remove_file(root.join("a.txt")).unwrap();
    match verify(&root, &bundle, &trust) {
        Err(VerifyError::Mismatch(m)) => assert_eq!(m, [Mismatch::Missing("a.txt".into())]),
        other => panic!("{other:?}"),
    }
    match verify_model(&root, &bundle, &trust, &lenient, &none) {
        Err(VerifyError::Mismatch(m)) => assert_eq!(m, [Mismatch::Missing("a.txt".into())]),
        other => panic!("{other:?}"),
    }
    write(&root, "a.txt", b"");

    // A wrong key: the hint says so; without the hint the signature fails.
    let other = Trust::Key(
        PrivateKey::generate(KeyAlgorithm::EcdsaP256)
            .unwrap()
            .public_key(),
    );
    assert!(matches!(
        verify(&root, &bundle, &other),
        Err(VerifyError::KeyMismatch { .. })
    ));
    let mut no_hint = bundle.clone();
    no_hint.verification_material.public_key = None;
    assert!(matches!(
        verify(&root, &no_hint, &other),
        Err(VerifyError::BadSignature(_))
    ));
    verify(&root, &no_hint, &trust).unwrap();
}

#[test]
fn shards_sign_and_verify_and_name_the_changed_shard() {
    let dir = tempfile::tempdir().unwrap();
    let root = model(dir.path());
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP384).unwrap();
    let options = HashOptions {
        method: Method::Shards {
            shard_size: 1 << 20,
        },
        ..HashOptions::default()
    };
    let (manifest, bundle) = sign_model(&root, &options, &key, &Material::KeyHint, &none).unwrap();
    // 3 MiB in 1 MiB shards, 2 small files; the empty file has no shard.
    assert_eq!(manifest.resources().len(), 5);
    let trust = Trust::Key(key.public_key());
    verify(&root, &bundle, &trust).unwrap();
    let mut big = std::fs::read(root.join("weights/big.bin")).unwrap();
    big[(2 << 20) + 5] = 0;
    std::fs::write(root.join("weights/big.bin"), &big).unwrap();
    match verify(&root, &bundle, &trust) {
        Err(VerifyError::Mismatch(m)) => assert!(
            matches!(&m[..], [Mismatch::Changed { name, .. }] if name == "weights/big.bin:2097152:3145728"),
            "{m:?}"
        ),
        other => panic!("{other:?}"),
    }
}

/// A bundle over `statement_json` (as raw payload bytes) signed by `key`.
fn bundle_over(payload: &[u8], payload_type: &str, key: &PrivateKey) -> Bundle {
    let mut bundle = sign_statement(
        &Statement::new(vec![], "x", serde_json::Value::Null),
        key,
        &Material::KeyHint,
    )
    .unwrap();
    bundle.dsse_envelope = Envelope::sign(payload_type, payload, |pae| key.sign(pae));
    bundle
}

#[test]
fn malformed_bundles_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = model(dir.path());
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let trust = Trust::Key(key.public_key());
    let (manifest, good) = sign_model(
        &root,
        &HashOptions::default(),
        &key,
        &Material::KeyHint,
        &none,
    )
    .unwrap();

    for (text, expect) in [
        ("", "not a Sigstore bundle"),
        ("{}", "missing field"),
        ("[1,2]", "not a Sigstore bundle"),
        (
            r#"{"mediaType":"application/json","verificationMaterial":{},"dsseEnvelope":{"payload":"","payloadType":"","signatures":[]}}"#,
            "mediaType",
        ),
    ] {
        let err = Bundle::from_json(text.as_bytes()).unwrap_err();
        assert!(err.contains(expect), "{text}: {err}");
    }

    // Truncated signature.
    let mut truncated = good.clone();
    let sig = &mut truncated.dsse_envelope.signatures[0].sig;
    sig.truncate(sig.len() / 2);
    assert!(matches!(
        verify(&root, &truncated, &trust),
        Err(VerifyError::BadSignature(_) | VerifyError::Malformed(_))
    ));
    // Signature not base64.
    let mut garbled = good.clone();
    garbled.dsse_envelope.signatures[0].sig = "%%%".into();
    assert!(
        matches!(verify(&root, &garbled, &trust), Err(VerifyError::Malformed(m)) if m.contains("signatures[0].sig"))
    );
    // No signature at all.
    let mut unsigned = good.clone();
    unsigned.dsse_envelope.signatures.clear();
    assert!(matches!(
        verify(&root, &unsigned, &trust),
        Err(VerifyError::NoSignature)
    ));
    // Payload changed after signing.
    let mut swapped = good.clone();
    swapped.dsse_envelope.payload =
        bastion_attest::dsse::Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{}", |_| vec![]).payload;
    assert!(matches!(
        verify(&root, &swapped, &trust),
        Err(VerifyError::BadSignature(_))
    ));

    // Wrong payload type, even if correctly signed.
    let statement = serde_json::to_vec(&Statement::for_manifest(&manifest)).unwrap();
    let typed = bundle_over(&statement, "application/json", &key);
    assert!(
        matches!(verify(&root, &typed, &trust), Err(VerifyError::PayloadType(t)) if t == "application/json")
    );

    // Signed, but not a statement / wrong predicate / inconsistent root digest.
    let not_json = bundle_over(b"not json", IN_TOTO_PAYLOAD_TYPE, &key);
    assert!(matches!(
        verify(&root, &not_json, &trust),
        Err(VerifyError::Statement(_))
    ));
    // Signed correctly, but the statement itself is wrong.
    type Mutation = fn(&mut serde_json::Value);
    let cases: [(Mutation, &str); 3] = [
        (
            |v| v["predicateType"] = "https://slsa.dev/provenance/v1".into(),
            "predicateType",
        ),
        (
            |v| v["subject"][0]["digest"]["sha256"] = "00".repeat(32).into(),
            "inconsistent",
        ),
        (
            |v| v["predicate"]["serialization"]["hash_type"] = "blake2".into(),
            "blake2",
        ),
    ];
    for (mutate, expect) in cases {
        let mut value: serde_json::Value = serde_json::from_slice(&statement).unwrap();
        mutate(&mut value);
        let bad = bundle_over(
            &serde_json::to_vec(&value).unwrap(),
            IN_TOTO_PAYLOAD_TYPE,
            &key,
        );
        assert!(
            matches!(verify(&root, &bad, &trust), Err(VerifyError::Statement(ref m)) if m.contains(expect)),
            "{expect}"
        );
    }
}

#[test]
fn accepts_model_signing_float_shard_size() {
    let dir = tempfile::tempdir().unwrap();
    let root = model(dir.path());
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let options = HashOptions {
        method: Method::Shards {
            shard_size: 1_000_000,
        },
        ..HashOptions::default()
    };
    let manifest = hash_model(&root, &options, &none).unwrap();
    let mut value = serde_json::to_value(Statement::for_manifest(&manifest)).unwrap();
    assert_eq!(value["predicate"]["serialization"]["shard_size"], 1_000_000);
    value["predicate"]["serialization"]["shard_size"] = serde_json::json!(1_000_000.0);
    let bundle = bundle_over(
        &serde_json::to_vec(&value).unwrap(),
        IN_TOTO_PAYLOAD_TYPE,
        &key,
    );
    verify(&root, &bundle, &Trust::Key(key.public_key())).unwrap();
}

mod chains {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    };

    struct Pki {
        root: Vec<u8>,
        intermediate: Vec<u8>,
        leaf: Vec<u8>,
        leaf_key: PrivateKey,
    }

    fn ca(name: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        p
    }

    fn make_pki(leaf_usage: Option<KeyUsagePurpose>, code_signing: bool) -> Pki {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let root_params = ca("Bastion Test Root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let mid_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mid_params = ca("Bastion Test Intermediate");
        let mid = mid_params.signed_by(&mid_key, &root_issuer).unwrap();
        let mid_issuer = Issuer::new(mid_params, mid_key);
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "model signer");
        leaf_params.key_usages = leaf_usage.into_iter().collect();
        if code_signing {
            leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        }
        let leaf = leaf_params.signed_by(&leaf_key, &mid_issuer).unwrap();
        Pki {
            root: root.der().to_vec(),
            intermediate: mid.der().to_vec(),
            leaf: leaf.der().to_vec(),
            leaf_key: PrivateKey::from_pem(&leaf_key.serialize_pem()).unwrap(),
        }
    }

    #[test]
    fn certificate_chain_bundles_verify_against_local_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = model(dir.path());
        let pki = make_pki(Some(KeyUsagePurpose::DigitalSignature), false);
        let chain = Material::Certificates(vec![pki.leaf.clone(), pki.intermediate.clone()]);
        let (_, bundle) =
            sign_model(&root, &HashOptions::default(), &pki.leaf_key, &chain, &none).unwrap();
        assert!(
            bundle
                .verification_material
                .x509_certificate_chain
                .is_some()
        );
        verify(&root, &bundle, &Trust::Roots(vec![pki.root.clone()])).unwrap();
        // The intermediate given as the anchor also works.
        verify(
            &root,
            &bundle,
            &Trust::Roots(vec![pki.intermediate.clone()]),
        )
        .unwrap();

        // Another PKI's root does not.
        let stranger = make_pki(Some(KeyUsagePurpose::DigitalSignature), false);
        let err = verify(&root, &bundle, &Trust::Roots(vec![stranger.root])).unwrap_err();
        assert!(err.to_string().contains("no trusted root"), "{err}");

        // The intermediate left out of the bundle: no path to the root.
        let (_, short) = sign_model(
            &root,
            &HashOptions::default(),
            &pki.leaf_key,
            &Material::Certificates(vec![pki.leaf.clone()]),
            &none,
        )
        .unwrap();
        assert!(verify(&root, &short, &Trust::Roots(vec![pki.root.clone()])).is_err());

        // A key bundle checked against roots, and a key that is not the certificate's.
        let (_, keyed) = sign_model(
            &root,
            &HashOptions::default(),
            &pki.leaf_key,
            &Material::KeyHint,
            &none,
        )
        .unwrap();
        assert!(matches!(
            verify(&root, &keyed, &Trust::Roots(vec![pki.root.clone()])),
            Err(VerifyError::NoCertificates)
        ));
        let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        assert!(sign_model(&root, &HashOptions::default(), &other, &chain, &none).is_err());
    }

    #[test]
    fn leaf_must_be_allowed_to_sign() {
        let dir = tempfile::tempdir().unwrap();
        let root = model(dir.path());
        let server_only = make_pki(Some(KeyUsagePurpose::KeyEncipherment), false);
        let chain = Material::Certificates(vec![
            server_only.leaf.clone(),
            server_only.intermediate.clone(),
        ]);
        let (_, bundle) = sign_model(
            &root,
            &HashOptions::default(),
            &server_only.leaf_key,
            &chain,
            &none,
        )
        .unwrap();
        let err = verify(&root, &bundle, &Trust::Roots(vec![server_only.root])).unwrap_err();
        assert!(err.to_string().contains("may not sign"), "{err}");

        let code = make_pki(None, true);
        let chain = Material::Certificates(vec![code.leaf.clone(), code.intermediate.clone()]);
        let (_, bundle) = sign_model(
            &root,
            &HashOptions::default(),
            &code.leaf_key,
            &chain,
            &none,
        )
        .unwrap();
        verify(&root, &bundle, &Trust::Roots(vec![code.root])).unwrap();
    }

    #[test]
    fn garbage_certificates_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let root = model(dir.path());
        let pki = make_pki(Some(KeyUsagePurpose::DigitalSignature), false);
        let chain = Material::Certificates(vec![pki.leaf.clone()]);
        let (_, mut bundle) =
            sign_model(&root, &HashOptions::default(), &pki.leaf_key, &chain, &none).unwrap();
        if let Some(c) = bundle.verification_material.x509_certificate_chain.as_mut() {
            c.certificates[0].raw_bytes = "AAAA".into();
        }
        let err = verify(&root, &bundle, &Trust::Roots(vec![pki.root])).unwrap_err();
        assert!(
            err.to_string().contains("not a DER X.509 certificate"),
            "{err}"
        );
    }
}

fn manifest_of(paths: &[String]) -> Manifest {
    let resources = paths
        .iter()
        .enumerate()
        .map(|(i, p)| Resource {
            components: components(p),
            range: None,
            digest: [u8::try_from(i % 251).unwrap(); 32],
        })
        .collect();
    Manifest::new(
        "m".into(),
        Serialization {
            method: Method::Files,
            allow_symlinks: false,
            ignore_paths: vec![],
        },
        resources,
    )
}

proptest! {
    /// The order is by components, whatever order files are found in, and the root digest
    /// depends only on the set of (path, digest) pairs.
    #[test]
    fn order_and_root_are_stable(
        mut paths in proptest::collection::btree_set("[a-c.\\-]{1,3}(/[a-c.\\-_]{1,3}){0,2}", 1..20)
            .prop_map(|s| s.into_iter().filter(|p| !p.split('/').any(|c| c == "." || c == "..")).collect::<Vec<_>>()),
        seed in any::<u64>(),
    ) {
        prop_assume!(!paths.is_empty());
        let first = manifest_of(&paths);
        let keys: Vec<Vec<String>> = first.resources().iter().map(|r| r.components.clone()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        prop_assert_eq!(&keys, &sorted);
        // Same pairs in another order.
        let mut pairs: Vec<(String, [u8; 32])> = paths.iter().cloned().zip(first_digests(&paths)).collect();
        let n = pairs.len();
        for i in 0..n {
            let j = usize::try_from(seed.rotate_left(u32::try_from(i).unwrap()) % n as u64).unwrap();
            pairs.swap(i, j);
        }
        paths = pairs.iter().map(|(p, _)| p.clone()).collect();
        let again = Manifest::new("m".into(), first.serialization.clone(), pairs.into_iter().map(|(p, d)| Resource { components: components(&p), range: None, digest: d }).collect());
        prop_assert_eq!(first.root_digest(), again.root_digest());
        // And the statement round-trips to the same manifest.
        let back = Statement::for_manifest(&again).to_manifest().unwrap();
        prop_assert_eq!(back.root_digest(), first.root_digest());
        prop_assert!(back.diff(&first).is_empty());
        let _ = paths;
    }
}

fn first_digests(paths: &[String]) -> Vec<[u8; 32]> {
    (0..paths.len())
        .map(|i| [u8::try_from(i % 251).unwrap(); 32])
        .collect()
}

#[test]
fn bundle_signature_checks_before_reading_the_statement() {
    let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let statement = Statement::new(vec![], "https://example.com/p", serde_json::json!({"a": 1}));
    let bundle = sign_statement(&statement, &key, &Material::KeyHint).unwrap();
    let back = verify_bundle(&bundle, &Trust::Key(key.public_key())).unwrap();
    assert_eq!(back, statement);
}
