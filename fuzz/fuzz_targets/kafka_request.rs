#![no_main]

// As in the broker: hostile array lengths must not abort (see strom-alloc).
#[global_allocator]
static ALLOC: strom_alloc::GuardedAlloc = strom_alloc::GuardedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| strom_fuzz::kafka_request::check(data));
