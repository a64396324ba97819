//! `hashrig solo` flags, and their validation into [`SoloSettings`]; the
//! node flags it shares with `hashrig found-blocks submit`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use hashrig::job::gbt::rpc::{NodeRpc, RpcAuth};
use hashrig::job::gbt::SoloOptions;

use super::devices::DeviceChoice;
use super::mine::{RunArgs, RunSettings};
use super::terms::{self, Terms};
use super::DeviceArgs;

/// How to reach a node's JSON-RPC.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's JSON-RPC address, e.g. http://127.0.0.1:8332.
    #[arg(long, value_name = "URL")]
    pub rpc_url: Option<String>,
    #[arg(long, value_name = "USER")]
    pub rpc_user: Option<String>,
    #[arg(long, value_name = "PASS")]
    pub rpc_pass: Option<String>,
    /// The node's cookie file (instead of --rpc-user/--rpc-pass).
    #[arg(long, value_name = "FILE")]
    pub rpc_cookie: Option<PathBuf>,
}

impl NodeArgs {
    /// The validated endpoint; calls time out after `timeout`.
    pub fn rpc(&self, timeout: Duration, terms: Terms) -> anyhow::Result<NodeRpc> {
        let url_named = terms.name(terms::RPC_URL);
        let Some(given) = self.rpc_url.as_deref().map(str::trim) else {
            bail!("{url_named}: the node's RPC address is needed (or [solo] rpc_url in the config file)");
        };
        // Credentials in the URL are taken out of it, so that it can be
        // shown (logs, summaries) without them.
        let (bare, url_auth) = match hashrig::redact::split_userinfo(given) {
            Some((bare, user, password)) => (bare, Some((user, password.unwrap_or_default()))),
            None => (given.to_owned(), None),
        };
        let url = bare.as_str();
        if url.starts_with("https://") {
            bail!(
                "{url_named} {url}: https is not supported; reach the node over loopback or a tunnel"
            );
        }
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("{url_named} {url:?}: must start with http://");
        };
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            bail!("{url_named} {url:?}: no host");
        }
        let (user, pass, cookie) = (
            terms.name(terms::RPC_USER),
            terms.name(terms::RPC_PASS),
            terms.name(terms::RPC_COOKIE),
        );
        let url_shown = hashrig::redact::mask_url(given);
        let auth = match (&self.rpc_user, &self.rpc_pass, &self.rpc_cookie) {
            (None, None, None) => match url_auth {
                Some((user, password)) => RpcAuth::UserPass { user, password },
                None => RpcAuth::None,
            },
            _ if url_auth.is_some() => bail!(
                "{url_named} {url_shown}: credentials in the address and in {user}/{pass}/{cookie}; give one"
            ),
            (Some(user), Some(password), None) => RpcAuth::UserPass {
                user: user.clone(),
                password: password.clone(),
            },
            (None, None, Some(path)) => RpcAuth::Cookie(path.clone()),
            (_, _, Some(_)) => {
                bail!("{cookie}: give either a cookie file or {user}/{pass}")
            }
            (Some(_), None, None) => bail!("{user}: needs {pass}"),
            (None, Some(_), None) => bail!("{pass}: needs {user}"),
        };
        Ok(NodeRpc::new(url, auth, timeout))
    }
}

#[derive(Debug, Args)]
pub struct SoloArgs {
    #[command(flatten)]
    pub devices: DeviceArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub rig: super::RigArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Where block rewards go; must belong to the node's network.
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// A short text put into each coinbase.
    #[arg(long, value_name = "TEXT")]
    pub coinbase_sig: Option<String>,
    /// Stop cleanly after this many blocks accepted by the node.
    #[arg(long, value_name = "N")]
    pub max_blocks: Option<u64>,
}

/// Validated `solo` settings.
#[derive(Debug, Clone)]
pub struct SoloSettings {
    pub devices: DeviceChoice,
    pub run: RunSettings,
    pub rig: super::RigSettings,
    pub solo: SoloOptions,
}

/// Longest `--coinbase-sig`: the scriptSig holds 100 bytes, of which the
/// height and the extranonce take up to 14.
const MAX_TAG: usize = 80;

impl SoloArgs {
    /// The settings of a start: the flags with the config file under them.
    pub fn settings(&self) -> anyhow::Result<SoloSettings> {
        let terms = Terms::Flags;
        let devices = self.devices.settings(terms)?;
        let rpc = self.node.rpc(Duration::from_secs(30), terms)?;
        let tag = self.check_given(terms)?;
        let Some(address) = self.address.as_deref() else {
            bail!("--address: the payout address is needed (or [solo] address in the config file)");
        };
        let run = self.run.settings(terms)?;
        let rig = self.rig.settings(terms)?;
        Ok(SoloSettings {
            devices,
            solo: SoloOptions {
                rpc,
                address: address.to_owned(),
                coinbase_tag: tag,
                max_blocks: self.max_blocks,
                poll_interval: Duration::from_secs(1),
            },
            run,
            rig,
        })
    }

    /// What is given, checked (the node and the address need not be).
    pub fn check(&self, terms: Terms) -> anyhow::Result<()> {
        if self.node.rpc_url.is_some() {
            self.node.rpc(Duration::from_secs(30), terms)?;
        }
        self.check_given(terms).map(drop)
    }

    /// Everything but the node; the coinbase tag.
    fn check_given(&self, terms: Terms) -> anyhow::Result<Vec<u8>> {
        let tag = self.coinbase_sig.clone().unwrap_or_default().into_bytes();
        if tag.len() > MAX_TAG {
            bail!(
                "{}: {} bytes; at most {MAX_TAG}",
                terms.name(terms::COINBASE_SIG),
                tag.len()
            );
        }
        if self.max_blocks == Some(0) {
            bail!("--max-blocks 0: must be at least 1");
        }
        if let Some(address) = self.address.as_deref() {
            let named = terms.name(terms::ADDRESS);
            if address.trim().is_empty() {
                bail!("{named}: empty");
            }
            // Parsed now for a quick error; the network is checked with the node.
            address
                .parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
                .with_context(|| format!("{named} {address:?}: not an address"))?;
        }
        Ok(tag)
    }
}
