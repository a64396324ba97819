//! Flags every long-running mode shares: the HTTP API, thermal limits, the
//! watchdog hook and the power figures for cost estimates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use hashrig::api::cgminer::{AllowList, CgminerApiConfig};
use hashrig::api::keys::KeyStore;
use hashrig::api::ApiConfig;
use hashrig::thermal::ThermalLimits;
use serde::{Deserialize, Serialize};

use super::terms::{self, Setting, Terms};

/// Per-device settings from the config file (`[[device]]`), by the index
/// `hashrig devices` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceOverride {
    pub index: usize,
    pub enabled: Option<bool>,
    pub batch_ms: Option<u64>,
}

#[derive(Debug, Args, Default, Clone)]
pub struct RigArgs {
    /// Serve the HTTP API on ADDR:PORT (use 127.0.0.1 unless the rig's
    /// network is trusted); needs --api-keys.
    #[arg(long, value_name = "ADDR:PORT")]
    pub api_bind: Option<String>,
    /// The API keys file (see `hashrig api-key new`).
    #[arg(long, value_name = "FILE")]
    pub api_keys: Option<PathBuf>,
    /// Answer cgminer's API on ADDR:PORT (farm tools read 127.0.0.1:4028).
    #[arg(long, value_name = "ADDR:PORT")]
    pub cgminer_api: Option<String>,
    /// Who may use the cgminer API's privileged commands (`W:`) or read it
    /// (`R:`), cgminer's form: W:127.0.0.1/32,R:10.0.0/24.
    #[arg(long, value_name = "LIST")]
    pub cgminer_api_allow: Option<String>,
    /// Throttle a device above this temperature (°C).
    #[arg(long, value_name = "C")]
    pub temp_target: Option<f64>,
    /// Stop a device at this temperature (°C) until it cools below the target.
    #[arg(long, value_name = "C")]
    pub temp_cutoff: Option<f64>,
    /// Run this shell command when a device turns sick or fails
    /// (HASHRIG_DEVICE, HASHRIG_DEVICE_NAME and HASHRIG_HEALTH are set).
    #[arg(long, value_name = "CMD")]
    pub on_sick: Option<String>,
    /// The rig's power draw at the wall, for cost estimates (default: what
    /// the sensors report).
    #[arg(long, value_name = "W")]
    pub power_watts: Option<f64>,
    /// The price of a kWh, for the daily cost estimate.
    #[arg(long, value_name = "PRICE")]
    pub kwh_price: Option<f64>,
    /// Per-device settings from the config file.
    #[arg(skip)]
    pub device_overrides: Vec<DeviceOverride>,
}

/// Validated [`RigArgs`].
#[derive(Debug, Clone, Default)]
pub struct RigSettings {
    pub api: Option<ApiConfig>,
    pub cgminer_api: Option<CgminerApiConfig>,
    pub device_overrides: Vec<DeviceOverride>,
    pub thermal: ThermalLimits,
    pub on_sick: Option<String>,
    pub power_watts: Option<f64>,
    pub kwh_price: Option<f64>,
}

fn celsius(named: &str, value: Option<f64>) -> anyhow::Result<Option<f64>> {
    match value {
        Some(t) if !(t.is_finite() && t > 0.0 && t < 150.0) => {
            bail!("{named} {t}: must be a temperature between 0 and 150 °C")
        }
        other => Ok(other),
    }
}

impl RigArgs {
    /// Every check but reading the keys file; the API's address, if on.
    pub fn check(&self, terms: Terms) -> anyhow::Result<(ThermalLimits, Option<SocketAddr>)> {
        let checked = self.check_values(terms)?;
        let needs = |setting: Setting, other: Setting| {
            format!("{}: needs {}", terms.name(setting), terms.wanted(other))
        };
        if self.cgminer_api_allow.is_some() && self.cgminer_api.is_none() {
            bail!(needs(terms::CGMINER_API_ALLOW, terms::CGMINER_API));
        }
        match (&self.api_bind, &self.api_keys) {
            (None, Some(_)) => bail!(needs(terms::API_KEYS, terms::API_BIND)),
            (Some(bind), None) => bail!(
                "{} {bind}: needs {} (create one with `hashrig api-key new`)",
                terms.name(terms::API_BIND),
                terms.wanted(terms::API_KEYS)
            ),
            _ => Ok(checked),
        }
    }

    /// Each value given, alone: what a config file must pass even when
    /// flags will complete it (`[api] keys_file` with `--api-bind`).
    pub fn check_values(
        &self,
        terms: Terms,
    ) -> anyhow::Result<(ThermalLimits, Option<SocketAddr>)> {
        let target = celsius(terms.name(terms::TEMP_TARGET), self.temp_target)?;
        let cutoff = celsius(terms.name(terms::TEMP_CUTOFF), self.temp_cutoff)?;
        if let (Some(t), Some(c)) = (target, cutoff) {
            if c <= t {
                bail!(
                    "{} {c}: must be above {} {t}",
                    terms.name(terms::TEMP_CUTOFF),
                    terms.name(terms::TEMP_TARGET)
                );
            }
        }
        for (setting, value) in [
            (terms::POWER_WATTS, self.power_watts),
            (terms::KWH_PRICE, self.kwh_price),
        ] {
            if let Some(v) = value {
                if !(v.is_finite() && v >= 0.0) {
                    bail!("{} {v}: must be a non-negative number", terms.name(setting));
                }
            }
        }
        let bind = match &self.api_bind {
            None => None,
            Some(bind) => Some(bind.parse::<SocketAddr>().with_context(|| {
                format!(
                    "{} {bind:?}: not ADDR:PORT, e.g. 127.0.0.1:4029",
                    terms.name(terms::API_BIND)
                )
            })?),
        };
        self.cgminer_api(terms)?;
        let thermal = ThermalLimits {
            target_c: target,
            cutoff_c: cutoff,
            ..ThermalLimits::default()
        };
        Ok((thermal, bind))
    }

    /// The cgminer API's settings, if it is on.
    pub fn cgminer_api(&self, terms: Terms) -> anyhow::Result<Option<CgminerApiConfig>> {
        let allow = match &self.cgminer_api_allow {
            None => AllowList::default(),
            Some(list) => list
                .parse::<AllowList>()
                .with_context(|| format!("{} {list:?}", terms.name(terms::CGMINER_API_ALLOW)))?,
        };
        let Some(bind) = &self.cgminer_api else {
            return Ok(None);
        };
        let bind = bind.parse::<SocketAddr>().with_context(|| {
            format!(
                "{} {bind:?}: not ADDR:PORT, e.g. 127.0.0.1:4028",
                terms.name(terms::CGMINER_API)
            )
        })?;
        Ok(Some(CgminerApiConfig::new(bind, allow)))
    }

    /// The checked settings, with the API keys read.
    pub fn settings(&self, terms: Terms) -> anyhow::Result<RigSettings> {
        let (thermal, bind) = self.check(terms)?;
        let api = match (bind, &self.api_keys) {
            (Some(bind), Some(keys)) => {
                if !bind.ip().is_loopback() {
                    tracing::warn!(
                        "the API listens on {bind}, beyond this machine: keep its keys secret"
                    );
                }
                let keys = KeyStore::load(keys).context(terms.name(terms::API_KEYS))?;
                Some(ApiConfig {
                    power_watts: self.power_watts,
                    kwh_price: self.kwh_price,
                    ..ApiConfig::new(bind, Arc::new(keys))
                })
            }
            _ => None,
        };
        Ok(RigSettings {
            api,
            cgminer_api: self.cgminer_api(terms)?,
            device_overrides: self.device_overrides.clone(),
            thermal,
            on_sick: self.on_sick.clone(),
            power_watts: self.power_watts,
            kwh_price: self.kwh_price,
        })
    }
}
