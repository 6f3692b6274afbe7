//! Records signed by the router they describe (issue #20): a router signs
//! each link-state and address record it originates, and every router
//! checks the signature of a record before it believes it, whoever relayed
//! it. Mutual TLS proves who a neighbour is; signatures prove who wrote a
//! record, so one bad or buggy router of the mesh cannot forge another's.
//!
//! A signature covers the record's *state*, not the message that carried
//! it: the router, the instance and sequence number, and a digest of the
//! content (the link-state record's neighbours and costs; the address
//! record's whole address set). So a relay may answer a request with the
//! full record it assembled from deltas, and the originator's signature on
//! the last delta still proves it. The cryptography is behind
//! [`RecordAuth`], so the protocol stays free of keys and files (the
//! router's implementation uses the inter-router TLS profile's key and ca;
//! the simulator models a PKI).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::RouterId;

/// A record's proof of origin.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signer's certificate chain (DER), its own certificate first.
    pub certs: Vec<Bytes>,
    /// The signature scheme (the TLS 1.3 `SignatureScheme` code point,
    /// RFC 8446 §4.2.3).
    pub scheme: u16,
    /// The signature over the record's [`payload`].
    pub value: Bytes,
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signature(scheme {:#06x}, {} certificate(s), {} bytes)",
            self.scheme,
            self.certs.len(),
            self.value.len()
        )
    }
}

/// Why a record's signature is not accepted, or cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The record carries no signature.
    #[error("the record is not signed")]
    Missing,
    /// The signer's certificate does not verify against the trusted ca.
    #[error("the signer's certificate does not verify: {0}")]
    Certificate(String),
    /// The certificate is valid but names another router.
    #[error("the signer's certificate does not name router {0}")]
    NotNamed(RouterId),
    /// The signature does not match the record.
    #[error("the signature does not match the record")]
    Mismatch,
    /// This router cannot sign (its key cannot be used).
    #[error("cannot sign: {0}")]
    CannotSign(String),
}

/// Signs this router's records and checks other routers'.
pub trait RecordAuth: Send + Sync + fmt::Debug {
    /// Signs `payload` as this router.
    ///
    /// # Errors
    ///
    /// [`SignatureError::CannotSign`] if the key cannot be used.
    fn sign(&self, payload: &[u8]) -> Result<Signature, SignatureError>;

    /// Checks that `sig` over `payload` was made by router `origin`: its
    /// certificate chain verifies against the trusted ca, names `origin`,
    /// and its key made the signature.
    ///
    /// # Errors
    ///
    /// Why it was not.
    fn verify(
        &self,
        origin: &RouterId,
        payload: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError>;
}

/// Shared handle on a [`RecordAuth`].
pub type Auth = Arc<dyn RecordAuth>;

/// What a signature covers: the domain, the kind of record, the router,
/// its version, and the digest of the record's content.
fn payload(kind: u8, id: &RouterId, instance: u64, seq: u64, content: [u8; 32]) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 + id.as_str().len());
    p.extend_from_slice(b"ferry routing record v1\0");
    p.push(kind);
    p.extend_from_slice(&(id.as_str().len() as u32).to_be_bytes());
    p.extend_from_slice(id.as_str().as_bytes());
    p.extend_from_slice(&instance.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&content);
    p
}

/// Appends `s` with its length, so that no two sequences of strings hash
/// alike.
fn put_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u32).to_be_bytes());
    h.update(s.as_bytes());
}

/// What router `id` signs for its link-state record at `instance` and
/// `seq`: `neighbors` in order of id, without `id` itself (as a router
/// keeps a record it received).
pub fn link_state_payload<'a>(
    id: &RouterId,
    instance: u64,
    seq: u64,
    neighbors: impl IntoIterator<Item = (&'a RouterId, &'a u32)>,
) -> Vec<u8> {
    let mut h = Sha256::new();
    for (n, cost) in neighbors {
        put_str(&mut h, n.as_str());
        h.update(cost.to_be_bytes());
    }
    payload(b'L', id, instance, seq, h.finalize().into())
}

/// What router `id` signs for its address record at `instance` and
/// `seq`: `addresses` is the whole set, in order, each once. Costs one
/// SHA-256 pass over the set per update (a few hundred microseconds at
/// 10,000 addresses).
pub fn addresses_payload<'a>(
    id: &RouterId,
    instance: u64,
    seq: u64,
    addresses: impl IntoIterator<Item = &'a str>,
) -> Vec<u8> {
    let mut h = Sha256::new();
    for a in addresses {
        put_str(&mut h, a);
    }
    payload(b'M', id, instance, seq, h.finalize().into())
}
