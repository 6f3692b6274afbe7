//! Routing records signed with the router's certificate (issue #20): the
//! routing protocol's [`RecordAuth`] over a TLS profile. A router signs the
//! records it originates with the key of its inter-router profile; another
//! router's record is believed if its certificate chain verifies against
//! the profile's `ca` as a client certificate would in the mutual TLS
//! handshake, the certificate names that router (its CN or a DNS name, as
//! for the router id of an inter-router connection), and its key made the
//! signature. Signatures use the TLS 1.3 schemes (RFC 8446 §4.2.3) of the
//! key: ECDSA, Ed25519 or RSA-PSS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::SignatureScheme;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::SigningKey;

use super::{CertNames, TlsProfiles, provider};
use crate::routing::{RecordAuth, RouterId, Signature, SignatureError};

/// Schemes a record may be signed with: those of TLS 1.3.
const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
];

/// How long a router's verified certificate chain is trusted without
/// verifying it again (so expiry and a new `ca` take effect).
const CHAIN_TTL: Duration = Duration::from_secs(600);

/// Routers whose verified chain is remembered; past it the memory starts
/// afresh.
const CHAIN_CACHE: usize = 4096;

/// A profile's signing material: the key and chain of `cert`, and the
/// verifier of client certificates against `ca`.
pub struct RecordMaterial {
    key: Arc<dyn SigningKey>,
    chain: Vec<Bytes>,
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for RecordMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordMaterial")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl RecordMaterial {
    pub(super) fn new(
        key: Arc<dyn SigningKey>,
        chain: &[CertificateDer<'static>],
        verifier: Arc<dyn ClientCertVerifier>,
    ) -> Self {
        Self {
            key,
            chain: chain.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
            verifier,
        }
    }
}

/// Signs and checks routing records with TLS profile `profile`'s material
/// as currently loaded (a rotated certificate signs from the next record
/// on).
#[derive(Debug)]
pub struct RecordKeys {
    profiles: Arc<TlsProfiles>,
    profile: String,
    /// Chains verified lately, by router: the chain and when.
    verified: Mutex<HashMap<RouterId, (Vec<Bytes>, Instant)>>,
}

impl RecordKeys {
    /// Records signed with profile `profile` of `profiles`, if it has the
    /// material to sign and check (`cert`, `key` and `ca`).
    pub fn new(profiles: Arc<TlsProfiles>, profile: &str) -> Option<Self> {
        profiles.material(profile)?.records.as_ref()?;
        Some(Self {
            profiles,
            profile: profile.to_string(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    fn material(&self) -> Result<Arc<super::Material>, SignatureError> {
        self.profiles
            .material(&self.profile)
            .filter(|m| m.records.is_some())
            .ok_or_else(|| SignatureError::CannotSign(format!("tls profile {:?}", self.profile)))
    }

    /// Whether `certs` verifies against the ca now (remembered for a
    /// while per router).
    fn chain_ok(
        &self,
        origin: &RouterId,
        certs: &[Bytes],
        verifier: &dyn ClientCertVerifier,
    ) -> Result<(), SignatureError> {
        let now = Instant::now();
        let mut verified = self.verified.lock().expect("not poisoned");
        if let Some((chain, at)) = verified.get(origin)
            && chain == certs
            && now < *at + CHAIN_TTL
        {
            return Ok(());
        }
        let der: Vec<CertificateDer<'_>> =
            certs.iter().map(|c| CertificateDer::from(&c[..])).collect();
        let (end_entity, intermediates) = der.split_first().ok_or_else(|| {
            SignatureError::Certificate("the record carries no certificate".into())
        })?;
        verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map_err(|e| SignatureError::Certificate(e.to_string()))?;
        if !CertNames::of(end_entity).is_some_and(|n| n.names(origin.as_str())) {
            return Err(SignatureError::NotNamed(origin.clone()));
        }
        if verified.len() >= CHAIN_CACHE {
            verified.clear();
        }
        verified.insert(origin.clone(), (certs.to_vec(), now));
        Ok(())
    }
}

impl RecordAuth for RecordKeys {
    fn sign(&self, payload: &[u8]) -> Result<Signature, SignatureError> {
        let material = self.material()?;
        let records = material.records.as_ref().expect("filtered");
        let signer = records.key.choose_scheme(SCHEMES).ok_or_else(|| {
            SignatureError::CannotSign("the key has no TLS 1.3 signature scheme".into())
        })?;
        let value = signer
            .sign(payload)
            .map_err(|e| SignatureError::CannotSign(e.to_string()))?;
        Ok(Signature {
            certs: records.chain.clone(),
            scheme: u16::from(signer.scheme()),
            value: value.into(),
        })
    }

    fn verify(
        &self,
        origin: &RouterId,
        payload: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        let material = self
            .material()
            .map_err(|_| SignatureError::Certificate("no ca to check against".into()))?;
        let records = material.records.as_ref().expect("filtered");
        self.chain_ok(origin, &sig.certs, records.verifier.as_ref())?;
        let scheme = SignatureScheme::from(sig.scheme);
        if !SCHEMES.contains(&scheme) {
            return Err(SignatureError::Mismatch);
        }
        let der = CertificateDer::from(&sig.certs[0][..]);
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| SignatureError::Certificate(e.to_string()))?;
        let algorithms = provider().signature_verification_algorithms.mapping;
        let (_, algs) = algorithms
            .iter()
            .find(|(s, _)| *s == scheme)
            .ok_or(SignatureError::Mismatch)?;
        algs.iter()
            .any(|alg| cert.verify_signature(*alg, payload, &sig.value).is_ok())
            .then_some(())
            .ok_or(SignatureError::Mismatch)
    }
}
