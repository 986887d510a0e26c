//! Criterion benchmarks of the layer pipeline on generated data: the tar
//! writer alone, and tar -> sha256 -> gzip -> sha256 with 1 and 2 threads.
//!
//! `cargo bench --bench layer`. The data is 16 MiB in 64 files, half of
//! them log-like text and half random bytes, roughly the mix of the
//! big-context workload in `bench/README.md` (61% random there).
//!
//! On the shared 2-core machine, in its quietest run (load ~1.5; with other
//! jobs running every figure doubles or worse): tar+sha256 9.6 ms
//! (1.6 GiB/s), gzip alone 284 ms on 1 thread (56 MiB/s) and 159 ms on 2
//! (101 MiB/s); the whole pipeline on 1 thread 285 ms (56 MiB/s), the tar
//! and both hashes hiding behind compression.

use std::hint::black_box;
use std::io;
use std::num::NonZeroUsize;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hoist_oci::DigestWriter;
use hoist_oci::layer::{
    Entry, GzipOptions, LayerOptions, TarOptions, gzip, sort_entries, write_layer, write_tar,
};

const FILES: usize = 64;
const FILE_SIZE: usize = 256 * 1024;

fn generated_entries() -> Vec<Entry> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut entries = vec![Entry::dir("data")];
    for i in 0..FILES {
        let mut content = Vec::with_capacity(FILE_SIZE);
        while content.len() < FILE_SIZE {
            let n = next();
            if i % 2 == 0 {
                let line = format!(
                    "ts={} level=info path=/items/{} status=200\n",
                    n % 100_000,
                    n >> 48
                );
                content.extend_from_slice(line.as_bytes());
            } else {
                content.extend_from_slice(&n.to_le_bytes());
            }
        }
        content.truncate(FILE_SIZE);
        entries.push(Entry::file(format!("data/file-{i:03}"), content));
    }
    sort_entries(&mut entries);
    entries
}

fn layer(c: &mut Criterion) {
    let entries = generated_entries();
    let mut group = c.benchmark_group("layer");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((FILES * FILE_SIZE) as u64));

    group.bench_function("tar+sha256", |b| {
        b.iter(|| {
            let out = DigestWriter::new(io::sink());
            write_tar(black_box(&entries), TarOptions::default(), out)
                .unwrap()
                .finish()
        })
    });
    let tar = write_tar(&entries, TarOptions::default(), Vec::new()).unwrap();
    for threads in [1, 2] {
        let options = GzipOptions {
            threads: NonZeroUsize::new(threads).unwrap(),
            ..GzipOptions::default()
        };
        group.bench_function(format!("gzip/{threads}-thread"), |b| {
            b.iter(|| {
                gzip::compress_reader(&mut black_box(&tar[..]), &mut io::sink(), &options).unwrap()
            })
        });
    }
    for threads in [1, 2] {
        let options = LayerOptions {
            tar: TarOptions::default(),
            gzip: GzipOptions {
                threads: NonZeroUsize::new(threads).unwrap(),
                ..GzipOptions::default()
            },
        };
        group.bench_function(format!("tar+sha256+gzip/{threads}-thread"), |b| {
            b.iter(|| write_layer(black_box(&entries), &options, io::sink()).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
