//! Benchmark reports: the JSON shape of DESIGN §8 (plus extra keys) and a
//! readable text form. MB = 10^6 bytes.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in milliseconds (`None` when not measured).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

impl Latency {
    /// From a histogram of microseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| Some((us as f64 / 1000.0 * 1000.0).round() / 1000.0);
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: Some((h.mean() / 1000.0 * 1000.0).round() / 1000.0),
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: &'static str,
    pub topic: String,
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    /// bytes / 10^6 / seconds.
    pub mb_per_sec: f64,
    pub latency_ms: Latency,
    pub record_size: usize,
    pub producers: usize,
    pub errors: u64,
}

/// Time from the first to the last event of a run (zero if either is missing).
pub fn span(first: Option<std::time::Instant>, last: Option<std::time::Instant>) -> Duration {
    match (first, last) {
        (Some(f), Some(l)) => l.saturating_duration_since(f),
        _ => Duration::ZERO,
    }
}

impl Report {
    pub fn new(
        workload: &'static str,
        topic: &str,
        records: u64,
        bytes: u64,
        elapsed: Duration,
        latency: Latency,
    ) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Self {
            workload,
            topic: topic.to_owned(),
            records,
            bytes,
            seconds: (secs * 1000.0).round() / 1000.0,
            records_per_sec: (records as f64 / secs).round(),
            mb_per_sec: (bytes as f64 / 1e6 / secs * 10.0).round() / 10.0,
            latency_ms: latency,
            record_size: 0,
            producers: 0,
            errors: 0,
        }
    }

    /// One readable line, plus the percentiles when measured.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}: {} records, {:.1} MB in {:.2} s = {:.0} records/s, {:.1} MB/s (MB = 10^6 bytes)",
            self.workload,
            self.records,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.records_per_sec,
            self.mb_per_sec
        );
        if self.errors > 0 {
            s.push_str(&format!(", {} errors", self.errors));
        }
        let l = &self.latency_ms;
        if let (Some(p50), Some(p99), Some(p999)) = (l.p50, l.p99, l.p999) {
            s.push_str(&format!(
                "\nlatency ms: p50 {p50:.3}  p90 {:.3}  p99 {p99:.3}  p99.9 {p999:.3}  max {:.3}",
                l.p90.unwrap_or(0.0),
                l.max.unwrap_or(0.0)
            ));
        }
        s
    }
}

/// Largest recorded latency: one hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;

/// A histogram of microseconds (1 µs .. 1 h, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    // Constant, valid bounds: construction cannot fail.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Records a duration (saturating into the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros().min(u128::from(MAX_US)) as u64).max(1);
    h.saturating_record(us);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_contract_keys() {
        let mut h = histogram();
        for ms in 1..=1000u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let r = Report::new(
            "produce",
            "t",
            1_000_000,
            1_024_000_000,
            Duration::from_millis(2500),
            Latency::from_micros(&h),
        );
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["records"], 1_000_000);
        assert_eq!(v["bytes"], 1_024_000_000u64);
        assert_eq!(v["seconds"], 2.5);
        assert_eq!(v["records_per_sec"], 400_000.0);
        assert_eq!(v["mb_per_sec"], 409.6);
        let p50 = v["latency_ms"]["p50"].as_f64().expect("p50");
        assert!((p50 - 500.0).abs() < 1.0, "{p50}");
        assert!(v["latency_ms"]["p99"].as_f64().is_some());
        assert!(v["latency_ms"]["p999"].as_f64().is_some());
        assert!(r.to_text().contains("409.6 MB/s"));
        let c = Report::new(
            "consume",
            "t",
            1,
            1,
            Duration::from_secs(1),
            Latency::default(),
        );
        let v = serde_json::to_value(&c).expect("json");
        assert!(v["latency_ms"]["p50"].is_null());
        assert!(!c.to_text().contains("latency"));
    }
}
