//! A router connection (`ferry_router::driver::Endpoint`, engine and link
//! logic) fed a valid handshake, then arbitrary well-typed frames, raw
//! garbage and the passing of time. See ../README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: ferry_router_fuzz::Input| ferry_router_fuzz::run(&input));
