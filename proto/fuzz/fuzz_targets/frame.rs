//! Arbitrary bytes into `decode_frame` (both layers, several
//! max-frame-sizes), `Value`, `Performative` and `SaslFrame` decoding; every
//! successful decode must re-encode to something that decodes to it again.
//! See ../README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry_proto_fuzz::check(data));
