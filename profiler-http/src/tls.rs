//! TLS for `https://` endpoints: rustls (with the `ring` provider, as the API's server side
//! uses) verifying the server's certificate chain against the system's CA bundle plus an
//! optional private CA, and the host name against the certificate. There is no switch to
//! turn verification off: a private CA is given as a file instead.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// Where the system's CA bundle is (Debian, Ubuntu, Alpine, Arch; the `ca-certificates`
/// package), unless `SSL_CERT_FILE` names another file.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A TLS client configuration: the trusted roots. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub(crate) config: Arc<rustls::ClientConfig>,
}

/// Why the trusted roots cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A CA file cannot be read or holds no PEM certificate.
    #[error("cannot read CA certificates from `{path}` (a PEM file is expected)")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate of the private CA file is not a usable trust anchor.
    #[error("`{path}` holds a certificate that cannot be a trust anchor")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// No trusted root at all.
    #[error(
        "no CA certificates to verify https servers with: `{bundle}` is missing or empty; \
         install the system's CA bundle, set SSL_CERT_FILE, or give a CA file"
    )]
    NoRoots {
        /// The system bundle looked at.
        bundle: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("cannot set up TLS")]
    Rustls(#[source] rustls::Error),
}

impl TlsConfig {
    /// The system's roots (`SSL_CERT_FILE`, else [`SYSTEM_CA_BUNDLE`]) plus every
    /// certificate in `private_ca` (PEM), if given.
    ///
    /// # Errors
    /// [`TlsError`]: an unreadable `private_ca` or `SSL_CERT_FILE`, or no roots at all.
    pub fn load(private_ca: Option<&Path>) -> Result<TlsConfig, TlsError> {
        let explicit = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
        let bundle = explicit
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
        // A missing default bundle is not an error while a private CA is given; a bundle
        // named by SSL_CERT_FILE must be readable.
        let system = match read_pem(&bundle) {
            Ok(certs) => certs,
            Err(e) if explicit.is_some() => return Err(e),
            Err(_) => Vec::new(),
        };
        TlsConfig::from_roots(&bundle, system, private_ca)
    }

    /// Only the certificates in `ca` (PEM), without the system's roots.
    ///
    /// # Errors
    /// [`TlsError`] for an unreadable or unusable file.
    pub fn from_ca_file(ca: &Path) -> Result<TlsConfig, TlsError> {
        TlsConfig::from_roots(ca, Vec::new(), Some(ca))
    }

    fn from_roots(
        bundle: &Path,
        system: Vec<CertificateDer<'static>>,
        private_ca: Option<&Path>,
    ) -> Result<TlsConfig, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        // A system bundle may hold a certificate webpki cannot parse; the others still count.
        roots.add_parsable_certificates(system);
        if let Some(path) = private_ca {
            for cert in read_pem(path)? {
                roots.add(cert).map_err(|source| TlsError::BadCa {
                    path: path.to_owned(),
                    source,
                })?;
            }
        }
        if roots.is_empty() {
            return Err(TlsError::NoRoots {
                bundle: bundle.to_owned(),
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConfig {
            config: Arc::new(config),
        })
    }

    /// The system's roots, loaded once per process: what a [`crate::Client`] without a
    /// TLS configuration of its own uses for `https://`.
    pub(crate) fn system_default() -> Result<TlsConfig, String> {
        static SYSTEM: OnceLock<Result<TlsConfig, String>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| TlsConfig::load(None).map_err(|e| error_chain(&e)))
            .clone()
    }
}

fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(pem(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// `error: cause: cause`, for an error kept as text.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The rustls error inside an I/O error, if the failure was TLS's.
pub(crate) fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

#[cfg(test)]
pub(crate) mod testutil {
    //! A CA, a server certificate it signs, and a blocking rustls server, for tests here
    //! and in the crates that use the client.

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::path::Path;
    use std::sync::Arc;
    use std::thread::JoinHandle;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A test CA and a server certificate for `names`.
    pub(crate) struct Pki {
        pub(crate) ca_pem: String,
        pub(crate) cert: CertificateDer<'static>,
        pub(crate) key: Vec<u8>,
    }

    pub(crate) fn pki(names: &[&str]) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // Each CA its own name: a second CA of the same name would fail on the signature,
        // not as an unknown issuer.
        static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("ember test CA {serial}"));
        let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        Pki {
            ca_pem: ca.pem(),
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    pub(crate) fn write_ca(pki: &Pki, dir: &Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &pki.ca_pem).unwrap();
        path
    }

    /// A TLS server on 127.0.0.1 answering `n` connections with `reply` after reading the
    /// request (head and `Content-Length` body); returns the port and, per connection, the
    /// request or the server's error.
    pub(crate) fn serve(
        pki: &Pki,
        n: usize,
        reply: &'static [u8],
    ) -> (u16, JoinHandle<Vec<Result<String, String>>>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(pki.key.clone()));
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![pki.cert.clone()], key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..n {
                let (tcp, _) = listener.accept().unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let served = (|| -> std::io::Result<String> {
                    let mut r = BufReader::new(&mut tls);
                    let mut head = String::new();
                    let mut len = 0;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line)? == 0 {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body)?;
                    head.push_str(&String::from_utf8_lossy(&body));
                    tls.write_all(reply)?;
                    tls.conn.send_close_notify();
                    tls.flush()?;
                    Ok(head)
                })();
                seen.push(served.map_err(|e| e.to_string()));
            }
            seen
        });
        (port, t)
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{pki, serve, write_ca};
    use super::*;
    use crate::{Client, Endpoint, HttpError, Limits, Timeouts};

    fn client(tls: TlsConfig) -> Client {
        Client::new(Timeouts::default(), Limits::default()).with_tls(tls)
    }

    #[test]
    fn https_requests_verify_the_server_against_a_private_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki(&["localhost"]);
        let tls = TlsConfig::from_ca_file(&write_ca(&pki, dir.path(), "ca.pem")).unwrap();
        let (port, server) = serve(
            &pki,
            2,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        );
        let e = Endpoint::parse(&format!("https://localhost:{port}/base")).unwrap();
        let r = client(tls.clone())
            .post(&e, "/push", &[("X-Scope-OrgID", "a")], b"hello")
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let r = client(tls).get(&e, "/q", &[]).unwrap();
        assert_eq!(r.body, b"ok");
        let seen = server.join().unwrap();
        let post = seen[0].as_ref().unwrap();
        assert!(post.starts_with("POST /base/push HTTP/1.1\r\n"), "{post}");
        assert!(
            post.contains(&format!("\r\nHost: localhost:{port}\r\n")),
            "{post}"
        );
        assert!(post.ends_with("\r\n\r\nhello"), "{post}");
    }

    #[test]
    fn a_server_of_another_ca_is_refused_naming_the_url_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = pki(&["localhost"]);
        let ours = pki(&["localhost"]);
        let tls = TlsConfig::from_ca_file(&write_ca(&ours, dir.path(), "ca.pem")).unwrap();
        let (port, server) = serve(&theirs, 1, b"HTTP/1.1 200 OK\r\n\r\n");
        let e = Endpoint::parse(&format!("https://localhost:{port}")).unwrap();
        let err = client(tls).post(&e, "/push", &[], b"x").unwrap_err();
        assert!(matches!(err, HttpError::Tls { .. }), "{err:?}");
        let text = error_chain(&err);
        assert_eq!(
            text,
            format!(
                "TLS with `https://localhost:{port}/push` failed: invalid peer certificate: \
                 UnknownIssuer"
            )
        );
        assert!(
            server.join().unwrap()[0].is_err(),
            "the server saw no request"
        );
    }

    #[test]
    fn a_certificate_for_another_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki(&["collector.example"]);
        let tls = TlsConfig::from_ca_file(&write_ca(&pki, dir.path(), "ca.pem")).unwrap();
        let (port, server) = serve(&pki, 1, b"HTTP/1.1 200 OK\r\n\r\n");
        let e = Endpoint::parse(&format!("https://127.0.0.1:{port}")).unwrap();
        let err = client(tls).get(&e, "/", &[]).unwrap_err();
        let text = error_chain(&err);
        assert!(text.contains("certificate not valid for name"), "{text}");
        let _ = server.join();
    }

    #[test]
    fn a_plain_http_server_behind_an_https_url_is_an_error_not_a_hang() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nplain http");
        });
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsConfig::from_ca_file(&write_ca(&pki(&["x"]), dir.path(), "ca.pem")).unwrap();
        let e = Endpoint::parse(&format!("https://localhost:{port}")).unwrap();
        let err = client(tls).get(&e, "/", &[]).unwrap_err();
        assert!(
            matches!(err, HttpError::Tls { .. } | HttpError::Io { .. }),
            "{err:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn unusable_ca_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = TlsConfig::from_ca_file(&junk).unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
        assert!(err.to_string().contains("junk.pem"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = TlsConfig::load(Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
