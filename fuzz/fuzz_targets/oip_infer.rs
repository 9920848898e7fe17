#![no_main]
//! libFuzzer entry for `shipyard_fuzzing::oip_infer` (the target's doc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| shipyard_fuzzing::oip_infer(data));
