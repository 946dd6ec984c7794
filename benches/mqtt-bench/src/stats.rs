//! Latency percentiles over a plain sorted `Vec`: a run records at most a
//! few million samples, so sorting them once is cheaper than a histogram
//! dependency and exact.

use serde::Serialize;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// Sorts `samples_ns` and reads the percentiles; `None` when empty.
pub fn percentiles(samples_ns: &mut [u64]) -> Option<Percentiles> {
    if samples_ns.is_empty() {
        return None;
    }
    samples_ns.sort_unstable();
    let micros = |nanos: u64| (nanos as f64 / 100.0).round() / 10.0;
    Some(Percentiles {
        p50_us: micros(nearest_rank(samples_ns, 0.5)),
        p99_us: micros(nearest_rank(samples_ns, 0.99)),
        p999_us: micros(nearest_rank(samples_ns, 0.999)),
        max_us: micros(samples_ns[samples_ns.len() - 1]),
    })
}

/// The nearest-rank percentile of sorted, non-empty `sorted`.
fn nearest_rank(sorted: &[u64], quantile: f64) -> u64 {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<u64> = (1..=1000).rev().map(|us| us * 1000).collect();
        let result = percentiles(&mut samples).unwrap();
        assert_eq!(result, Percentiles { p50_us: 500.0, p99_us: 990.0, p999_us: 999.0, max_us: 1000.0 });
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let result = percentiles(&mut [1_234]).unwrap();
        assert_eq!(result.p50_us, 1.2);
        assert_eq!(result.max_us, 1.2);
        assert!(percentiles(&mut []).is_none());
    }
}
