//! The names a peer's verified certificate carries: who a client is for
//! SASL EXTERNAL, and which router a router certificate speaks for.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The subject common name and DNS subject alternative names of a
/// certificate that verified against a profile's `ca`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertNames {
    /// The subject's CN, if it has one (the first, if several).
    pub common_name: Option<String>,
    /// The DNS names of the subjectAltName extension, in order.
    pub dns: Vec<String>,
}

impl CertNames {
    /// The names of `cert` (DER); `None` if it does not parse (rustls
    /// verified it, so it does).
    pub fn of(cert: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(cert).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let dns = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some((*d).to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self { common_name, dns })
    }

    /// The identity SASL EXTERNAL authenticates: the subject CN, else the
    /// first DNS name.
    pub fn identity(&self) -> Option<&str> {
        self.common_name
            .as_deref()
            .or_else(|| self.dns.first().map(String::as_str))
    }

    /// Whether the certificate names `id`: its CN or one of its DNS names
    /// equals it (DNS names compare without regard to ASCII case).
    pub fn names(&self, id: &str) -> bool {
        self.common_name.as_deref() == Some(id)
            || self.dns.iter().any(|d| d.eq_ignore_ascii_case(id))
    }
}
