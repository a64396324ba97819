//! What the current hashrate means: expected time to a share and to a
//! block, and, given the rig's power draw and the price of a kWh, what a
//! day of mining costs.

use super::Snapshot;

/// Expected time to a hash of difficulty `d` at `hashrate`: d × 2^32 / H.
pub fn expected_seconds(difficulty: f64, hashrate: f64) -> Option<f64> {
    (hashrate > 0.0 && difficulty > 0.0).then(|| difficulty * 4_294_967_296.0 / hashrate)
}

/// What the rig can expect at its hashrate, where it can be told.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Estimates {
    /// The share difficulty in force.
    pub share_difficulty: Option<f64>,
    /// Expected seconds between shares.
    pub seconds_to_share: Option<f64>,
    /// The network's difficulty.
    pub network_difficulty: Option<f64>,
    /// Expected seconds to a block.
    pub seconds_to_block: Option<f64>,
    /// The operator's figure (`--power-watts`), else the sum the sensors
    /// report.
    pub power_watts: Option<f64>,
    /// Energy per day, from the configured power draw.
    pub kwh_per_day: Option<f64>,
    /// In the currency of `--kwh-price`.
    pub cost_per_day: Option<f64>,
}

/// Estimates at the 1-minute hashrate.
pub fn estimate(
    snap: &Snapshot,
    power_watts: Option<f64>,
    measured_watts: Option<f64>,
    kwh_price: Option<f64>,
) -> Estimates {
    let rate = snap.total(|d| d.hashrate_1m);
    let watts = power_watts.or(measured_watts);
    let kwh_per_day = watts.map(|w| w * 24.0 / 1000.0);
    Estimates {
        share_difficulty: snap.share_difficulty,
        seconds_to_share: snap
            .share_difficulty
            .and_then(|d| expected_seconds(d, rate)),
        network_difficulty: snap.network_difficulty,
        seconds_to_block: snap
            .network_difficulty
            .and_then(|d| expected_seconds(d, rate)),
        power_watts: watts,
        kwh_per_day,
        cost_per_day: kwh_per_day.zip(kwh_price).map(|(k, p)| k * p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difficulty_one_at_one_gigahash_takes_4_3_seconds() {
        let s = expected_seconds(1.0, 1e9).unwrap();
        assert!((s - 4.294967296).abs() < 1e-9);
        assert_eq!(expected_seconds(1.0, 0.0), None);
    }
}
