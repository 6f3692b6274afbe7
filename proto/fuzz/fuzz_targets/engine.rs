//! A server-side engine (`ferry_proto::engine::Connection`) after a valid
//! handshake, fed arbitrary bytes in arbitrary chunks with time passing,
//! answered by a small application. See ../README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry_proto_fuzz::engine::run(data));
