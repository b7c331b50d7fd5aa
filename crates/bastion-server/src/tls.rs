//! HTTPS and mutual TLS (rustls). A listener that finishes TLS handshakes off the accept loop
//! (a slow or hostile client cannot hold up the others) and hands each connection over with
//! its [`Peer`]: the client address and, when the client presented a certificate that chains
//! to the configured CA, that certificate's subject. Authentication maps the subject's common
//! name to a Bastion user; this module only establishes what the handshake proved.

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use x509_cert::der::Decode;

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 512;
/// Finished handshakes waiting for the server to pick them up.
const READY_QUEUE: usize = 128;

/// Where the server's certificate and key are, and whether (and how) clients present theirs.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM: the server certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: CA certificates that client certificates must chain to. Without it, no client
    /// certificate is asked for.
    pub client_ca: Option<PathBuf>,
    /// Refuse the handshake of a client without a certificate (otherwise such clients fall
    /// back to tokens and passwords).
    pub require_client_cert: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path} holds no PEM certificate")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn read_error(what: &'static str, path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Read {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = File::open(path).map_err(|e| read_error(what, path, e))?;
    let certs = CertificateDer::pem_reader_iter(BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The rustls configuration for `files`, speaking HTTP/1.1 (ALPN) with the ring provider.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("server certificate", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| read_error("server private key", &files.key, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("client CA", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| read_error("client CA", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?,
            )
        }
        None if files.require_client_cert => {
            return Err(TlsError::Config(
                "client certificates are required but no client CA is configured".into(),
            ));
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client certificate that the handshake verified against the client CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject as an RFC 4514 string, e.g. `CN=alice,O=Example`.
    pub subject: String,
    /// The subject's common name (the last CN if several), which names the Bastion user.
    pub common_name: Option<String>,
}

impl ClientCert {
    /// Reads the subject of a DER certificate; `None` if it does not parse (rustls has
    /// already verified it, so this does not happen for well-formed chains).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let cert = x509_cert::Certificate::from_der(der).ok()?;
        let subject = &cert.tbs_certificate.subject;
        let common_name = subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .filter(|atv| atv.oid == COMMON_NAME)
            .filter_map(|atv| directory_string(&atv.value))
            .next_back();
        Some(Self {
            // RFC 4514: the last RDN first.
            subject: subject.to_string(),
            common_name,
        })
    }
}

/// id-at-commonName.
const COMMON_NAME: x509_cert::der::asn1::ObjectIdentifier =
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");

/// A DirectoryString value (UTF8String, PrintableString or IA5String) as text.
fn directory_string(value: &x509_cert::der::Any) -> Option<String> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    if let Ok(s) = value.decode_as::<Utf8StringRef<'_>>() {
        return Some(s.as_str().to_owned());
    }
    if let Ok(s) = value.decode_as::<PrintableStringRef<'_>>() {
        return Some(s.as_str().to_owned());
    }
    value
        .decode_as::<Ia5StringRef<'_>>()
        .ok()
        .map(|s| s.as_str().to_owned())
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Present only over TLS, when the client's certificate verified.
    pub client_cert: Option<Arc<ClientCert>>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            client_cert: None,
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Accepts TCP connections and yields them once their TLS handshake has finished.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(Self {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, Peer)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::warn!(client = %addr, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::warn!(client = %addr, "TLS handshake timed out");
                    return;
                }
            };
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| ClientCert::from_der(leaf))
                .map(Arc::new);
            let _ = ready.send((tls, Peer { addr, client_cert })).await;
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended (it only does when the runtime shuts down).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            client_cert: None,
        })
    }
}
