#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strom_fuzz::sigv4_header::check(data));
