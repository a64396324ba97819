//! A fixed-bucket latency histogram, shaped for Prometheus (cumulative
//! `le` buckets, sum, count).

/// Upper bounds of the buckets, in seconds.
pub const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Observations counted per bucket (not cumulative; the exporter sums).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Histogram {
    /// Observations per bucket of [`BUCKETS`].
    pub counts: [u64; BUCKETS.len()],
    /// Observations above the last bucket.
    pub overflow: u64,
    /// The sum of every observation, in seconds.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
}

impl Histogram {
    pub(crate) fn observe(&mut self, seconds: f64) {
        self.sum += seconds;
        self.count += 1;
        match BUCKETS.iter().position(|b| seconds <= *b) {
            Some(i) => self.counts[i] += 1,
            None => self.overflow += 1,
        }
    }

    /// `(le, cumulative count)` pairs, ending with `+Inf`.
    pub fn cumulative(&self) -> Vec<(String, u64)> {
        let mut running = 0;
        let mut out: Vec<(String, u64)> = BUCKETS
            .iter()
            .zip(self.counts)
            .map(|(le, n)| {
                running += n;
                (le.to_string(), running)
            })
            .collect();
        out.push(("+Inf".into(), running + self.overflow));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(0.0005);
        h.observe(0.03);
        h.observe(10.0);
        let c = h.cumulative();
        assert_eq!(c[0], ("0.001".into(), 1));
        assert_eq!(c[5], ("0.05".into(), 2));
        assert_eq!(c.last().unwrap(), &("+Inf".to_string(), 3));
        assert_eq!(h.count, 3);
    }
}
