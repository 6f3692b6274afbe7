//! Certificates made for a test (rcgen, ECDSA P-256): a CA, and servers,
//! clients and routers it signs, written as PEM files.
#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;
use std::sync::Arc;

use ferry_tests::TempDir;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server.
    Server,
    /// A TLS client.
    Client,
    /// A router: server and client.
    Router,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA and the directory its files go to.
pub struct Pki {
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM): the trust anchor.
    pub ca_pem: PathBuf,
    /// Held while a router's files are looked for and issued: tests of one
    /// process run in parallel threads, and two issuing the same router's
    /// files at once wrote one's key beside the other's certificate ("the
    /// key does not match the certificate").
    issuing: std::sync::Mutex<()>,
}

impl Pki {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Self {
        let dir = TempDir::new();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Ferry test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_pem = dir.write(&format!("{name}-ca.pem"), &ca.pem());
        Self {
            dir,
            ca,
            ca_pem,
            issuing: std::sync::Mutex::new(()),
        }
    }

    /// A certificate signed by this CA, written as `FILE.pem` and
    /// `FILE.key`: subject CN `cn` (if any), DNS names `dns`; `expired`:
    /// valid only in 2019.
    pub fn issue(
        &self,
        file: &str,
        cn: Option<&str>,
        dns: &[&str],
        usage: Usage,
        expired: bool,
    ) -> Issued {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Router => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2019, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Issued {
            cert: self.dir.write(&format!("{file}.pem"), &cert.pem()),
            key: self.dir.write(&format!("{file}.key"), &key.serialize_pem()),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self, file: &str) -> Issued {
        self.issue(
            file,
            Some("localhost"),
            &["localhost", "127.0.0.1"],
            Usage::Server,
            false,
        )
    }

    /// A router certificate naming router `id` (CN and DNS name), also
    /// valid for 127.0.0.1 (connectors dial that).
    pub fn router(&self, id: &str) -> Issued {
        self.issue(id, Some(id), &[id, "127.0.0.1"], Usage::Router, false)
    }

    /// The CA and certificates of the mesh routers of this test process
    /// (one CA, a certificate per router id, made once).
    pub fn mesh() -> &'static Pki {
        static MESH: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
        MESH.get_or_init(|| Pki::new("mesh"))
    }

    /// The files of router `id`'s certificate (issued on first use).
    pub fn router_files(&self, id: &str) -> Issued {
        let _issuing = self
            .issuing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cert = self.dir.path().join(format!("{id}.pem"));
        if cert.exists() {
            return Issued {
                key: cert.with_extension("key"),
                cert,
            };
        }
        self.router(id)
    }

    /// A rustls client configuration trusting this CA, presenting
    /// `identity` if given.
    pub fn client_config(&self, identity: Option<&Issued>) -> Arc<rustls::ClientConfig> {
        let config = ferry_proto::client::client_config(
            &self.ca_pem,
            identity.map(|i| (i.cert.as_path(), i.key.as_path())),
        )
        .unwrap();
        Arc::new(config)
    }

    /// A `[[tls]]` profile named `name` with `identity` and this CA.
    pub fn profile(&self, name: &str, identity: &Issued) -> String {
        format!(
            "[[tls]]\nname = \"{name}\"\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n\n",
            identity.cert.display(),
            identity.key.display(),
            self.ca_pem.display()
        )
    }
}
