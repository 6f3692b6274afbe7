//! What signed routing records cost (issue #20; docs/ROUTING.md, *Signed
//! records*): signing a record with a router's P-256 key, checking one
//! whose signer's chain was verified lately (the steady state), checking
//! one from a router not seen before (its chain verified too).
//! `cargo bench -p ferry-benches --bench records`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ferry_router::config::{Config, TlsProfileConfig};
use ferry_router::routing::{RecordAuth, RouterId};
use ferry_router::tls::{RecordKeys, TlsProfiles};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA and router `B`'s certificate and key in a fresh directory, and the
/// profile naming them.
fn profile() -> (tempdir::Dir, Arc<TlsProfiles>) {
    let dir = tempdir::Dir::new();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "bench CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["B".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "B");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let mut config = Config::embedded_default();
    config.tls.push(TlsProfileConfig {
        name: "mesh".into(),
        cert: Some(dir.write("b.pem", &cert.pem())),
        key: Some(dir.write("b.key", &key.serialize_pem())),
        ca: Some(dir.write("ca.pem", &ca.pem())),
        min_version: Default::default(),
    });
    (dir, Arc::new(TlsProfiles::load(&config).unwrap()))
}

mod tempdir {
    use std::path::PathBuf;

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).unwrap();
            let path = std::env::temp_dir()
                .join(format!("ferry-bench-records-{}", u64::from_le_bytes(bytes)));
            std::fs::create_dir(&path).unwrap();
            Self(path)
        }

        pub fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn bench(c: &mut Criterion) {
    let (_dir, profiles) = profile();
    let keys = RecordKeys::new(profiles.clone(), "mesh").unwrap();
    let b = RouterId::from("B");
    // About the size of a link-state record's payload.
    let payload = [7u8; 90];
    let sig = keys.sign(&payload).unwrap();
    eprintln!(
        "a signature: scheme {:#06x}, {} bytes; the certificate it carries: {} bytes",
        sig.scheme,
        sig.value.len(),
        sig.certs.iter().map(|c| c.len()).sum::<usize>()
    );
    let mut g = c.benchmark_group("records");
    g.bench_function("sign", |bench| {
        bench.iter(|| keys.sign(black_box(&payload)).unwrap())
    });
    keys.verify(&b, &payload, &sig).unwrap();
    g.bench_function("verify_known_signer", |bench| {
        bench.iter(|| keys.verify(&b, black_box(&payload), &sig).unwrap())
    });
    g.bench_function("verify_new_signer", |bench| {
        bench.iter_batched(
            || RecordKeys::new(profiles.clone(), "mesh").unwrap(),
            |fresh| fresh.verify(&b, black_box(&payload), &sig).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
