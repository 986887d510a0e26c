//! Parse, type, plan and check arbitrary Dockerfiles.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hoist_dockerfile::fuzzing::dockerfile(data));
