//! Measures hoist's parallel gzip on ~100 MB of mixed input, for the table
//! in `crates/oci/src/layer/gzip.rs`.
//!
//! `cargo run --release --example gzip_speed -- [INPUT_FILE]` prints the time,
//! throughput and output size for 1 and 2 threads (and checks that both
//! outputs are identical); with INPUT_FILE it also writes the input there so
//! `gzip -6` and `pigz -6` can be timed on the same bytes.

use std::num::NonZeroUsize;
use std::time::Instant;

use hoist_oci::layer::gzip::{self, GzipOptions};

/// 100 MiB: alternating 1 MiB runs of log-like text and random bytes.
fn mixed_input() -> Vec<u8> {
    const RUN: usize = 1 << 20;
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(100 * RUN);
    for run in 0..100 {
        let end = out.len() + RUN;
        if run % 2 == 0 {
            while out.len() < end {
                let n = next();
                let line = format!(
                    "2026-11-24T17:{:02}:{:02}Z level=info msg=\"request done\" path=/api/v1/items/{} status={} bytes={}\n",
                    n % 60,
                    (n >> 8) % 60,
                    (n >> 16) % 5000,
                    [200, 200, 200, 404, 500][(n >> 32) as usize % 5],
                    (n >> 40) % 100_000
                );
                out.extend_from_slice(line.as_bytes());
            }
            out.truncate(end);
        } else {
            while out.len() < end {
                out.extend_from_slice(&next().to_le_bytes());
            }
        }
    }
    out
}

fn main() {
    let input = mixed_input();
    if let Some(path) = std::env::args().nth(1) {
        std::fs::write(&path, &input).expect("write the input file");
    }
    let mut outputs = Vec::new();
    for threads in [1, 2] {
        let options = GzipOptions {
            threads: NonZeroUsize::new(threads).unwrap(),
            ..GzipOptions::default()
        };
        let mut out = Vec::with_capacity(input.len());
        let start = Instant::now();
        gzip::compress_reader(&mut &input[..], &mut out, &options).expect("compress");
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "threads {threads}: {seconds:.2} s, {:.1} MB/s, {} -> {} bytes ({:.2}%)",
            input.len() as f64 / seconds / 1e6,
            input.len(),
            out.len(),
            100.0 * out.len() as f64 / input.len() as f64
        );
        outputs.push(out);
    }
    assert!(
        outputs[0] == outputs[1],
        "outputs differ between thread counts"
    );
}
