//! A simulated PKI for signed routing records (issue #20).
//!
//! The real router signs its link-state and address records with the key
//! of its inter-router TLS certificate, and checks another router's
//! record against the mesh's ca and the router id the certificate names
//! ([`RecordAuth`]). What that guarantees is that *a router can sign only
//! as itself*: a router of the mesh holds a valid key, but only for the
//! certificate naming its own id.
//!
//! This module models that guarantee, cheaply enough for 1,000-router
//! runs: the simulator holds a mesh secret (drawn from the seed); router
//! `R`'s key is `HMAC-SHA256(secret, "ferry-sim router key" ‖ R)`; its
//! "certificate" is the bytes `ferry-sim cert\0R`; a signature is
//! `HMAC-SHA256(key of R, payload)`. [`SimAuth::verify`] takes the router
//! the certificate names, checks it is the record's origin, derives that
//! router's key and recomputes the MAC. A router (even a hostile one) is
//! handed only its own key ([`SimPki::auth_for`]), so it can make a valid
//! signature only under a certificate naming itself: a certificate naming
//! another router with its own MAC does not verify ([`SignatureError::
//! Mismatch`]), nor does its own certificate on another router's record
//! ([`SignatureError::NotNamed`]). A real ca signature over the
//! certificate is not modelled: a certificate here is only a name, and
//! the key derivation plays the ca's part.
//!
//! The cost is two HMACs per verification and one per signature (about
//! a microsecond), against the router's certificates' 46 µs to sign and
//! 161 µs to check (benches/RESULTS.md): the simulator models what
//! signatures protect, not what they cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ferry_router::routing::{self, RecordAuth, RouterId, Signature, SignatureError};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The signature scheme code point of a simulated signature: one of TLS
/// 1.3's private-use values (RFC 8446 §4.2.3, `0xFE00..=0xFFFF`).
pub const SIM_SCHEME: u16 = 0xFE51;

/// What a simulated certificate starts with, before the router id.
const CERT_PREFIX: &[u8] = b"ferry-sim cert\0";

/// The mesh's trust root: every router key derives from its secret.
#[derive(Debug)]
pub struct SimPki {
    secret: [u8; 32],
    /// Signatures made, by every router of the mesh.
    pub signed: AtomicU64,
    /// Signatures checked, and how many of them were refused.
    pub verified: AtomicU64,
    /// Signatures refused (forged, unsigned or corrupt records).
    pub refused: AtomicU64,
}

impl SimPki {
    /// A PKI whose secret derives from `seed` (a run stays reproducible).
    pub fn new(seed: u64) -> Arc<Self> {
        let mut h = Sha256::new();
        h.update(b"ferry-sim mesh secret v1\0");
        h.update(seed.to_be_bytes());
        Arc::new(Self {
            secret: h.finalize().into(),
            signed: AtomicU64::new(0),
            verified: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Router `id`'s signing key.
    fn key(&self, id: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC accepts a key of any length");
        mac.update(b"ferry-sim router key\0");
        mac.update(id);
        let key = mac.finalize().into_bytes();
        <HmacSha256 as KeyInit>::new_from_slice(&key).expect("HMAC accepts a key of any length")
    }

    /// The signer of router `id`: its certificate and its key, nothing
    /// else. What the simulator hands each router, the hostile one too.
    pub fn auth_for(self: &Arc<Self>, id: &str) -> Arc<SimAuth> {
        Arc::new(SimAuth {
            pki: self.clone(),
            id: id.to_string(),
        })
    }

    /// A certificate naming router `id`.
    pub fn certificate(id: &str) -> Bytes {
        let mut c = CERT_PREFIX.to_vec();
        c.extend_from_slice(id.as_bytes());
        Bytes::from(c)
    }

    /// Signatures (made, checked, refused) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.signed.load(Ordering::Relaxed),
            self.verified.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// One router's [`RecordAuth`]: signs with its own key, verifies with the
/// key of the router a record's certificate names.
#[derive(Debug)]
pub struct SimAuth {
    pki: Arc<SimPki>,
    id: String,
}

impl SimAuth {
    /// A signature of `payload` with this router's key, under a
    /// certificate naming `claimed` (its own id for an honest signature;
    /// another router's for a forgery, which [`verify`](RecordAuth::verify)
    /// refuses: the MAC is not that router's).
    pub fn sign_as(&self, claimed: &str, payload: &[u8]) -> Signature {
        self.pki.signed.fetch_add(1, Ordering::Relaxed);
        let mut mac = self.pki.key(self.id.as_bytes());
        mac.update(payload);
        Signature {
            certs: vec![SimPki::certificate(claimed)],
            scheme: SIM_SCHEME,
            value: Bytes::copy_from_slice(&mac.finalize().into_bytes()),
        }
    }

    /// [`verify`](RecordAuth::verify) without counting it (the
    /// simulator's own checks).
    pub(crate) fn check(
        &self,
        origin: &RouterId,
        payload: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        let cert = sig
            .certs
            .first()
            .ok_or_else(|| SignatureError::Certificate("no certificate".into()))?;
        let named = cert
            .strip_prefix(CERT_PREFIX)
            .filter(|_| sig.scheme == SIM_SCHEME)
            .ok_or_else(|| SignatureError::Certificate("not a certificate of this mesh".into()))?;
        if named != origin.as_str().as_bytes() {
            return Err(SignatureError::NotNamed(origin.clone()));
        }
        let mut mac = self.pki.key(named);
        mac.update(payload);
        mac.verify_slice(&sig.value)
            .map_err(|_| SignatureError::Mismatch)
    }
}

impl RecordAuth for SimAuth {
    fn sign(&self, payload: &[u8]) -> Result<Signature, SignatureError> {
        Ok(self.sign_as(&self.id, payload))
    }

    fn verify(
        &self,
        origin: &RouterId,
        payload: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        self.pki.verified.fetch_add(1, Ordering::Relaxed);
        let result = self.check(origin, payload, sig);
        if result.is_err() {
            self.pki.refused.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// The payload router `id`'s signature of its link-state record covers,
/// from the neighbours as an LSU carries them: the router's own
/// [`ferry_router::routing::link_state_payload`] over them as a receiving
/// router keeps them (by id, without `id`, the last cost of an id
/// winning). The hostile-router fault signs forged records over it, as a
/// real attacker would (the right bytes, the wrong key).
pub fn link_state_payload(
    id: &str,
    instance: u64,
    seq: u64,
    neighbors: &[(RouterId, u32)],
) -> Vec<u8> {
    let kept: std::collections::BTreeMap<RouterId, u32> = neighbors
        .iter()
        .filter(|(n, _)| n.as_str() != id)
        .cloned()
        .collect();
    routing::link_state_payload(&RouterId::from(id), instance, seq, &kept)
}

/// The payload router `id`'s signature of its address record covers:
/// `addresses` is the whole set (any order; duplicates count once).
pub fn addresses_payload(id: &str, instance: u64, seq: u64, addresses: &[String]) -> Vec<u8> {
    let set: std::collections::BTreeSet<&str> = addresses.iter().map(String::as_str).collect();
    routing::addresses_payload(&RouterId::from(id), instance, seq, set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_router_signs_only_as_itself() {
        let pki = SimPki::new(7);
        let (a, b) = (pki.auth_for("A"), pki.auth_for("B"));
        let payload = link_state_payload("A", 1, 2, &[("B".into(), 1)]);
        let genuine = a.sign(&payload).unwrap();
        // Anyone verifies A's signature as A's, and only as A's.
        assert_eq!(b.verify(&"A".into(), &payload, &genuine), Ok(()));
        assert_eq!(
            b.verify(&"B".into(), &payload, &genuine),
            Err(SignatureError::NotNamed("B".into()))
        );
        // B's own certificate on A's record; B's key under A's name.
        let own = b.sign(&payload).unwrap();
        assert_eq!(
            a.verify(&"A".into(), &payload, &own),
            Err(SignatureError::NotNamed("A".into()))
        );
        let forged = b.sign_as("A", &payload);
        assert_eq!(
            a.verify(&"A".into(), &payload, &forged),
            Err(SignatureError::Mismatch)
        );
        // A's signature on other content, or from another mesh.
        let other = link_state_payload("A", 1, 3, &[("B".into(), 1)]);
        assert_eq!(
            b.verify(&"A".into(), &other, &genuine),
            Err(SignatureError::Mismatch)
        );
        let stranger = SimPki::new(8).auth_for("A").sign(&payload).unwrap();
        assert_eq!(
            b.verify(&"A".into(), &payload, &stranger),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(pki.counts().2, 5);
    }
}
