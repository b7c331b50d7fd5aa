//! HTTPS and mutual TLS with certificates the test issues itself: a verified client
//! certificate's CN is the Bastion user (and roles still apply); unknown or disabled users,
//! certificates from another CA, expired ones, and clients without one where one is required
//! are all refused; an `Authorization` header wins over the certificate; plain HTTP and
//! garbage on the TLS port do not disturb the server; bad TLS files are clear errors.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use bastion_auth::Role;
use bastion_server::tls::{ClientCert, TlsFiles, server_config};
use bastion_store::meta::AuditQuery;
use common::{Backend, TestServer};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate signed by `ca`: (certificate PEM, key PEM).
fn issue(ca: &Ca, cn: &str, client: bool, expired: bool) -> (String, String) {
    let sans = if client {
        vec![]
    } else {
        vec!["127.0.0.1".to_string()]
    };
    let mut p = CertificateParams::new(sans).unwrap();
    // RFC 4514 writes the subject last RDN first: O=Bastion tests,CN=<cn>.
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "Bastion tests");
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    if expired {
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

struct Pki {
    ca: Ca,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let pki = Self {
            ca: ca("Bastion test CA"),
            dir: tempfile::tempdir().unwrap(),
        };
        let (cert, key) = issue(&pki.ca, "bastion-server", false, false);
        pki.write("server.pem", &cert);
        pki.write("server.key", &key);
        pki.write("ca.pem", &pki.ca.pem());
        pki
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn files(&self, require_client_cert: bool) -> TlsFiles {
        TlsFiles {
            cert: self.dir.path().join("server.pem"),
            key: self.dir.path().join("server.key"),
            client_ca: Some(self.dir.path().join("ca.pem")),
            require_client_cert,
        }
    }

    /// A client trusting this CA, presenting `identity` (certificate, key) if given.
    fn client(&self, identity: Option<&(String, String)>) -> reqwest::Client {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .build()
            .unwrap()
    }
}

async fn whoami(s: &TestServer, client: &reqwest::Client, token: Option<&str>) -> (u16, Value) {
    let mut req = client.get(s.url("/api/bastion/v1/whoami"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request over TLS");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn start(pki: &Pki, require: bool) -> TestServer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = server_config(&pki.files(require)).expect("TLS configuration");
    let s = TestServer::start_tls(Backend::Sqlite, tls).await;
    s.meta
        .create_user("carol", Role::Viewer, None)
        .await
        .unwrap();
    s.meta.create_user("dave", Role::Admin, None).await.unwrap();
    s.meta.set_user_disabled("dave", true).await.unwrap();
    s.meta.create_user("root", Role::Admin, None).await.unwrap();
    s
}

#[tokio::test]
async fn a_verified_client_certificate_names_the_user() {
    let pki = Pki::new();
    let s = start(&pki, false).await;
    let carol = pki.client(Some(&issue(&pki.ca, "carol", true, false)));

    let (status, me) = whoami(&s, &carol, None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["name"], "carol");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["method"], "certificate");
    assert_eq!(me["subject"], "O=Bastion tests,CN=carol");

    // Authentication is not authorization: a viewer still cannot write.
    let resp = carol
        .post(s.url("/api/2.0/mlflow/experiments/create"))
        .json(&json!({"name": "by-cert"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // An explicit credential wins over the connection's certificate.
    let (token, _) = s.meta.issue_token("root", "t", None).await.unwrap();
    let (status, me) = whoami(&s, &carol, Some(&token)).await;
    assert_eq!((status, me["name"].as_str()), (200, Some("root")));

    // Without a certificate (optional mode) tokens work and nothing else does.
    let anonymous = pki.client(None);
    assert_eq!(whoami(&s, &anonymous, None).await.0, 401);
    assert_eq!(whoami(&s, &anonymous, Some(&token)).await.0, 200);

    // A certified name that is not a user, and a disabled user, are refused and audited.
    let nobody = pki.client(Some(&issue(&pki.ca, "nobody", true, false)));
    let (status, body) = whoami(&s, &nobody, None).await;
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("'nobody'"),
        "{body}"
    );
    let dave = pki.client(Some(&issue(&pki.ca, "dave", true, false)));
    assert_eq!(whoami(&s, &dave, None).await.0, 401);
    // A CN that cannot be a user name at all.
    let odd = pki.client(Some(&issue(&pki.ca, "../etc passwd", true, false)));
    assert_eq!(whoami(&s, &odd, None).await.0, 401);

    let log = s
        .meta
        .audit_entries(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        log.iter().any(|e| e.action == "security.auth-failed"
            && e.actor.contains("cert:O=Bastion tests,CN=nobody")),
        "{log:?}"
    );
}

#[tokio::test]
async fn certificates_the_ca_did_not_issue_or_that_expired_are_refused_in_the_handshake() {
    let pki = Pki::new();
    let s = start(&pki, false).await;
    let other_ca = ca("Someone else's CA");
    let forged = pki.client(Some(&issue(&other_ca, "root", true, false)));
    assert!(
        forged
            .get(s.url("/api/bastion/v1/whoami"))
            .send()
            .await
            .is_err()
    );
    let expired = pki.client(Some(&issue(&pki.ca, "root", true, true)));
    assert!(
        expired
            .get(s.url("/api/bastion/v1/whoami"))
            .send()
            .await
            .is_err()
    );

    // Plain HTTP and garbage on the TLS port are dropped; the server carries on.
    for junk in [
        &b"GET /api/bastion/v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
    ] {
        let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let _ = tcp.write_all(junk).await;
        let mut buf = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf))
                .await;
        assert!(read.is_ok(), "the server should close the connection");
        assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"));
    }
    let root = pki.client(Some(&issue(&pki.ca, "root", true, false)));
    assert_eq!(whoami(&s, &root, None).await.0, 200);
}

#[tokio::test]
async fn a_required_client_certificate_leaves_no_other_way_in() {
    let pki = Pki::new();
    let s = start(&pki, true).await;
    let (token, _) = s.meta.issue_token("root", "t", None).await.unwrap();
    let anonymous = pki.client(None);
    assert!(
        anonymous
            .get(s.url("/api/bastion/v1/whoami"))
            .bearer_auth(&token)
            .send()
            .await
            .is_err(),
        "no certificate, no connection"
    );
    let carol = pki.client(Some(&issue(&pki.ca, "carol", true, false)));
    let (status, me) = whoami(&s, &carol, None).await;
    assert_eq!((status, me["name"].as_str()), (200, Some("carol")));
}

#[test]
fn bad_tls_files_are_clear_errors() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = Pki::new();
    let err = |files: TlsFiles| server_config(&files).unwrap_err().to_string();

    let mut files = pki.files(false);
    files.cert = pki.dir.path().join("missing.pem");
    let e = err(files);
    assert!(
        e.contains("server certificate") && e.contains("missing.pem"),
        "{e}"
    );

    let mut files = pki.files(false);
    files.cert = pki.write("empty.pem", "not a certificate\n");
    assert!(err(files).contains("holds no PEM certificate"));

    let mut files = pki.files(false);
    files.key = pki.write("other.key", &KeyPair::generate().unwrap().serialize_pem());
    let e = err(files);
    assert!(e.contains("certificate and key"), "{e}");

    let mut files = pki.files(false);
    files.client_ca = Some(pki.write("ca-empty.pem", ""));
    assert!(err(files).contains("client CA"));

    let mut files = pki.files(true);
    files.client_ca = None;
    assert!(err(files).contains("no client CA"));
}

#[test]
fn the_subject_common_name_is_read_from_the_certificate() {
    let ca = ca("CA");
    let (pem, _) = issue(&ca, "erin", true, false);
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let cert = ClientCert::from_der(&der).unwrap();
    assert_eq!(cert.common_name.as_deref(), Some("erin"));
    assert_eq!(cert.subject, "O=Bastion tests,CN=erin");

    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::OrganizationName, "No CN");
    let key = KeyPair::generate().unwrap();
    let no_cn = p.signed_by(&key, &ca).unwrap();
    let cert = ClientCert::from_der(no_cn.der()).unwrap();
    assert_eq!((cert.common_name, cert.subject.as_str()), (None, "O=No CN"));

    assert_eq!(ClientCert::from_der(b"\x30\x03\x02\x01\x00"), None);
}
