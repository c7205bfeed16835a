//! Criterion micro-benchmarks of the storage engine and the batch codec:
//! append and read of 1 KiB records in 1 MiB and 16 KiB batches, batch
//! validation (CRC-32C + record framing) and batch building.
//!
//! Run: `cargo bench -p strata-bench --bench log`

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use strata_broker::log::{Log, LogConfig};
use strata_proto::batch::{self, BatchBuilder};

fn make_batch(records: usize, size: usize) -> Bytes {
    let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let mut b = BatchBuilder::with_capacity(0, records * (size + 16) + 128);
    for i in 0..records {
        b.push(i as i64, None, Some(&payload), &[]);
    }
    b.finish()
}

fn bench_config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 20,
        retention_bytes: None,
        retention_ms: None,
        max_message_bytes: 4 << 20,
        ..LogConfig::default()
    }
}

/// Page-cache append cost: the log is recreated every 256 MiB (untimed) so
/// that dirty pages never pile up into disk-bound writeback.
fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("log_append");
    for (name, records) in [("1MiB_batch", 1024usize), ("16KiB_batch", 16)] {
        let b = make_batch(records, 1024);
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let (mut log, _) = Log::open(dir.path(), bench_config(), 0).expect("open");
                    let n = left.min(((256u64 << 20) / b.len() as u64).max(1));
                    let t = std::time::Instant::now();
                    for _ in 0..n {
                        log.append(&b, 1, 0).expect("append");
                    }
                    total += t.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("log_read");
    let b = make_batch(1024, 1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), bench_config(), 0).expect("open");
    for _ in 0..256 {
        log.append(&b, 1, 0).expect("append");
    }
    let end = log.next_offset();
    g.throughput(Throughput::Bytes(b.len() as u64));
    let mut at = 0i64;
    g.bench_function("1MiB_sequential", |bench| {
        bench.iter(|| {
            let r = log.read(at, 1 << 20, end).expect("read");
            at = if r.next_offset >= end {
                0
            } else {
                r.next_offset
            };
            r.records.len()
        })
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    let b = make_batch(1024, 1024);
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("validate_1MiB", |bench| {
        bench.iter(|| batch::validate(&b).expect("valid"))
    });
    let payload = vec![7u8; 1024];
    g.bench_function("build_1MiB", |bench| {
        bench.iter_batched(
            || BatchBuilder::with_capacity(0, (1 << 20) + 64 * 1024),
            |mut bb| {
                for i in 0..1024 {
                    bb.push(i, None, Some(&payload), &[]);
                }
                bb.finish()
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decode_1MiB", |bench| {
        bench.iter(|| {
            batch::records(&b)
                .expect("records")
                .filter(|r| r.is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, append, read, codec);
criterion_main!(benches);
