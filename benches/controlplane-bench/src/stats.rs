//! Latency summaries (nearest-rank percentiles over every sample, no
//! histogram) and the output: human-readable lines and one JSON line per
//! measurement, both on stdout, so `grep '^{'` keeps only the JSON.

use std::time::Duration;

use serde_json::{json, Value};

/// p50, p99 and max of a set of samples, in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Summary {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = |quantile: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let index = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            ms(sorted[index])
        };
        Summary { p50_ms: rank(0.50), p99_ms: rank(0.99), max_ms: rank(1.0) }
    }

    /// `{"p50_ms":..,"p99_ms":..,"max_ms":..}` with `prefix` before each key.
    pub fn json(&self, prefix: &str) -> Value {
        json!({
            format!("{prefix}p50_ms"): round(self.p50_ms),
            format!("{prefix}p99_ms"): round(self.p99_ms),
            format!("{prefix}max_ms"): round(self.max_ms),
        })
    }

    pub fn human(&self) -> String {
        format!("p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", self.p50_ms, self.p99_ms, self.max_ms)
    }
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Three decimals are plenty for milliseconds and rates.
pub fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Merges the object `extra` into the object `base`.
pub fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// Prints one human-readable line.
pub fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
}

/// Prints one JSON line for a measurement.
pub fn emit(measurement: Value) {
    println!("{measurement}");
}

/// This process's resident memory in MiB (Linux), if it can be read.
pub fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(round(kib / 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let summary = Summary::of(&samples);
        assert_eq!((summary.p50_ms, summary.p99_ms, summary.max_ms), (50.0, 99.0, 100.0));
        assert_eq!(Summary::of(&[]).max_ms, 0.0);
        assert_eq!(Summary::of(&[Duration::from_millis(7)]).p99_ms, 7.0);
    }
}
