//! Expand arbitrary words in every lexer mode.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hoist_dockerfile::fuzzing::shell_word(data));
