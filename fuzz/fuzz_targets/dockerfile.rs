//! Parse, type, plan and check arbitrary Dockerfiles.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hoist::fuzzing::dockerfile(data));
