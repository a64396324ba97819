//! Solo mining straight from a node: `getblocktemplate` (long poll, or a
//! poll of the best block when the node has none), a coinbase paying the
//! operator's address, and `submitblock` for every block found, retried
//! until the node answers. Each found block is in the found-blocks file
//! before it reaches this source (the sink writes it when it is verified);
//! what the node answered is appended after it.

pub mod answer;
pub mod rpc;
pub mod submit;
pub mod template;

use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use bitcoin::{Address, Network, ScriptBuf};
use serde_json::{json, Value};

use crate::error_chain::Chain;
use crate::found::journal::answer_record;
use crate::found::{Found, FoundSink, Taken};
use crate::job::source::{JobSource, JobSourceError, SourceContext};
use crate::job::{Origin, SourceKind};
use crate::pow::target::target_difficulty;
use crate::shutdown::Shutdown;
use crate::stats::{format_difficulty, ShareResult};
use answer::ChainInfo;
use rpc::{NodeError, NodeRpc};
use submit::submit_block;
use template::{assemble, BlockTemplate, RawTemplate};

/// How long a long poll may hang before it is renewed.
const LONGPOLL_TIMEOUT: Duration = Duration::from_secs(300);

/// Everything the solo source is told.
#[derive(Debug, Clone)]
pub struct SoloOptions {
    /// The node's RPC endpoint.
    pub rpc: NodeRpc,
    /// The payout address, checked against the node's network at start.
    pub address: String,
    /// Pushed into the coinbase scriptSig after the extranonce.
    pub coinbase_tag: Vec<u8>,
    /// Stop after this many blocks the node accepted.
    pub max_blocks: Option<u64>,
    /// Best-block poll interval when the node has no long poll.
    pub poll_interval: Duration,
}

/// The network a node reports in `getblockchaininfo`.
pub fn network_of_chain(chain: &str) -> Option<Network> {
    match chain {
        "main" => Some(Network::Bitcoin),
        "test" | "testnet3" | "testnet4" => Some(Network::Testnet),
        "signet" => Some(Network::Signet),
        "regtest" => Some(Network::Regtest),
        _ => None,
    }
}

/// Why solo mining could not start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SoloError {
    /// The node failed in a way retrying does not mend.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// `getblockchaininfo` named a chain hashrig does not know.
    #[error("unknown chain {chain:?} in getblockchaininfo")]
    UnknownChain {
        /// The chain it names.
        chain: String,
    },
    /// The payout address does not parse.
    #[error("payout address {address:?} is not an address")]
    NotAnAddress {
        /// The payout address given.
        address: String,
        /// rust-bitcoin's parse error.
        #[source]
        source: bitcoin::address::ParseError,
    },
    /// The payout address is for another network than the node's.
    #[error("payout address {address:?} is not an address of the node's network ({network})")]
    WrongNetwork {
        /// The payout address given.
        address: String,
        /// The node's network.
        network: Network,
    },
    /// The template updater's thread did not start.
    #[error("could not start the template updater's thread")]
    Thread(#[source] std::io::Error),
}

/// The payout script of `address`, which must belong to `network`.
pub fn payout_script(address: &str, network: Network) -> Result<ScriptBuf, SoloError> {
    let parsed = Address::from_str(address).map_err(|source| SoloError::NotAnAddress {
        address: address.to_owned(),
        source,
    })?;
    let checked = parsed
        .require_network(network)
        .map_err(|_| SoloError::WrongNetwork {
            address: address.to_owned(),
            network,
        })?;
    Ok(checked.script_pubkey())
}

/// The solo-mining job source.
pub struct GbtSource {
    options: SoloOptions,
}

impl GbtSource {
    /// Solo mining with `options`.
    pub fn new(options: SoloOptions) -> Self {
        GbtSource { options }
    }
}

fn gbt_params(longpoll_id: Option<&str>) -> Value {
    match longpoll_id {
        Some(id) => json!([{"rules": ["segwit"], "longpollid": id}]),
        None => json!([{"rules": ["segwit"]}]),
    }
}

/// Calls until the node answers or `shutdown` fires, logging each failure.
fn call_until_answered<T: serde::de::DeserializeOwned>(
    rpc: &NodeRpc,
    method: &str,
    params: &Value,
    ctx: &SourceContext,
) -> Option<Result<T, NodeError>> {
    let mut delay = Duration::from_millis(500);
    loop {
        match rpc.call(method, params.clone()) {
            Err(e) if e.is_transient() => {
                let error = Chain(&e).to_string();
                tracing::warn!("{error}; retrying in {delay:?}");
                ctx.stats.record_pool_error(0, &error);
                let shutdown = &ctx.shutdown;
                if shutdown.wait_timeout(delay) {
                    return None;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            other => return Some(other),
        }
    }
}

impl JobSource for GbtSource {
    fn name(&self) -> String {
        self.options.rpc.url.clone()
    }

    fn run(&mut self, ctx: SourceContext) -> Result<(), JobSourceError> {
        let failed = |cause: SoloError| JobSourceError::failed(&self.options.rpc.url, cause);
        let rpc = &self.options.rpc;
        let Some(info) =
            call_until_answered::<ChainInfo>(rpc, "getblockchaininfo", &json!([]), &ctx)
        else {
            return Ok(());
        };
        let info = info.map_err(|e| failed(e.into()))?;
        ctx.stats.record_pool_answered(0);
        let chain = info.chain.as_str();
        let network = network_of_chain(chain).ok_or_else(|| {
            failed(SoloError::UnknownChain {
                chain: chain.to_owned(),
            })
        })?;
        let script = payout_script(&self.options.address, network).map_err(failed)?;
        tracing::info!("solo mining on {chain} to {}", self.options.address);

        let mut miner = Solo {
            options: &self.options,
            ctx: &ctx,
            script,
            origin: Origin::new(SourceKind::Node, 0, &self.options.rpc.url),
            current: None,
            accepted: 0,
        };
        // The first template; then the updater keeps them coming.
        let Some(first) = miner.fetch_template() else {
            return Ok(());
        };
        let longpoll_id = first.longpoll_id.clone();
        miner.use_template(first);
        let (templates, inbox) = mpsc::channel();
        spawn_updater(
            rpc.clone(),
            longpoll_id,
            self.options.poll_interval,
            templates,
            ctx.found.clone(),
            ctx.shutdown.clone(),
        )
        .map_err(|e| failed(SoloError::Thread(e)))?;
        miner.run(&inbox);
        Ok(())
    }
}

/// Sends a template whenever the node has a new one: by long poll when the
/// node offers it, by polling the best block hash otherwise. Each one wakes
/// the source from its wait on the sink.
fn spawn_updater(
    rpc: NodeRpc,
    longpoll_id: Option<String>,
    poll_interval: Duration,
    templates: Sender<Box<BlockTemplate>>,
    wake: FoundSink,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("solo-templates".into())
        .spawn(move || {
            let long = rpc.with_timeout(LONGPOLL_TIMEOUT);
            let mut longpoll_id = longpoll_id;
            let mut best: Option<String> = None;
            let mut delay = Duration::from_millis(500);
            while !shutdown.is_triggered() {
                let fetched = match &longpoll_id {
                    Some(id) => long.call::<RawTemplate>("getblocktemplate", gbt_params(Some(id))),
                    None => {
                        if shutdown.wait_timeout(poll_interval) {
                            break;
                        }
                        match rpc.call::<String>("getbestblockhash", json!([])) {
                            Ok(hash) if Some(&hash) == best.as_ref() => continue,
                            Ok(hash) => {
                                best = Some(hash);
                                rpc.call("getblocktemplate", gbt_params(None))
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                match fetched.map(BlockTemplate::try_from) {
                    Ok(Ok(template)) => {
                        delay = Duration::from_millis(500);
                        if template.longpoll_id.is_some() {
                            longpoll_id = template.longpoll_id.clone();
                        }
                        if templates.send(Box::new(template)).is_err() {
                            break;
                        }
                        wake.wake();
                    }
                    Ok(Err(e)) => {
                        tracing::error!("{}; not mined", Chain(&e));
                        shutdown.wait_timeout(delay);
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                    Err(e) => {
                        tracing::warn!("{}; retrying in {delay:?}", Chain(&e));
                        shutdown.wait_timeout(delay);
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            }
        })
        .map(|_| ())
}

struct Solo<'a> {
    options: &'a SoloOptions,
    ctx: &'a SourceContext,
    script: ScriptBuf,
    origin: Origin,
    /// The template being mined.
    current: Option<BlockTemplate>,
    accepted: u64,
}

impl Solo<'_> {
    fn url(&self) -> &str {
        &self.options.rpc.url
    }

    fn run(&mut self, templates: &Receiver<Box<BlockTemplate>>) {
        while !self.ctx.shutdown.is_triggered() && !self.done() {
            match self.ctx.found.wait(Duration::from_millis(200)) {
                Taken::Found(found) => self.on_found(*found),
                Taken::Empty => {}
                // No device left to find anything; the miner decides.
                Taken::Closed => {
                    self.ctx.shutdown.wait_timeout(Duration::from_millis(100));
                }
            }
            while let Ok(template) = templates.try_recv() {
                self.use_template(*template);
            }
        }
        self.ctx.work.withdraw();
        if self.done() {
            return;
        }
        // Stopping: what the devices found in their last batches is
        // submitted too, while the grace period lasts.
        while !self.ctx.grace_over() {
            match self.ctx.found.wait(Duration::from_millis(100)) {
                Taken::Found(found) => self.on_found(*found),
                Taken::Empty => {}
                Taken::Closed => break,
            }
        }
    }

    fn done(&self) -> bool {
        self.options.max_blocks.is_some_and(|n| self.accepted >= n)
    }

    /// A template from the node, retried until it answers with a usable one.
    fn fetch_template(&self) -> Option<BlockTemplate> {
        let mut delay = Duration::from_millis(500);
        loop {
            let answer = call_until_answered::<RawTemplate>(
                &self.options.rpc,
                "getblocktemplate",
                &gbt_params(None),
                self.ctx,
            )?;
            let problem = match answer {
                Ok(raw) => match BlockTemplate::try_from(raw) {
                    Ok(template) => return Some(template),
                    Err(e) => Chain(&e).to_string(),
                },
                Err(e) => Chain(&e).to_string(),
            };
            tracing::error!("{problem}; asking again in {delay:?}");
            if self.ctx.shutdown.wait_timeout(delay) {
                return None;
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    fn use_template(&mut self, template: BlockTemplate) {
        if let Some(current) = &self.current {
            let same = current.prev_hash == template.prev_hash
                && current.bits == template.bits
                && current.txids == template.txids;
            if same {
                return;
            }
        }
        if self
            .ctx
            .found
            .is_solved(self.origin.index, &template.prev_hash)
        {
            // One block per parent: ours is found; wait for the next tip.
            return;
        }
        let new_parent = self
            .current
            .as_ref()
            .is_none_or(|c| c.prev_hash != template.prev_hash);
        let mut job = match assemble(
            &template,
            &self.script,
            &self.options.coinbase_tag,
            self.origin.clone(),
        ) {
            Ok(job) => job,
            Err(e) => {
                tracing::error!("{}: {}; not mined", self.url(), Chain(&e));
                if new_parent {
                    self.ctx.work.withdraw();
                }
                return;
            }
        };
        job.clean = new_parent;
        let published = self.ctx.work.publish(job);
        let difficulty = target_difficulty(&published.block_target());
        self.ctx.stats.set_network_difficulty(Some(difficulty));
        tracing::info!(
            "{}: template for height {} ({} transactions, difficulty {})",
            self.url(),
            template.height,
            template.transactions.len(),
            format_difficulty(difficulty)
        );
        self.current = Some(template);
    }

    /// A block (shares mean nothing here): submitted until the node answers
    /// or the grace period after a stop is over, and the answer recorded.
    fn on_found(&mut self, found: Found) {
        if !found.is_block {
            return;
        }
        let job = &found.work.job;
        let Some(body) = &job.block_body else {
            return;
        };
        let on_current = self
            .current
            .as_ref()
            .is_some_and(|c| c.prev_hash == job.prev_hash);
        if on_current && !self.ctx.shutdown.is_triggered() {
            // Devices stop this parent until the next template.
            self.ctx.work.withdraw();
        }
        let hash = found.hash.to_string();
        let block = hex::encode(body.block_bytes(&found.header(), &found.work.extranonce2));
        tracing::warn!(
            "BLOCK at height {} submitted to {}: {hash}",
            body.height,
            self.url()
        );
        let ctx = self.ctx;
        let (outcome, reason) = submit_block(&self.options.rpc, &block, &|| ctx.stop_deadline());
        self.record(answer_record(&hash, self.url(), outcome, reason.as_deref()));
        let Some(result) = outcome.answer() else {
            tracing::error!(
                "block {hash} not submitted: {}; it is in the found-blocks file: `hashrig found-blocks submit` sends it later",
                reason.unwrap_or_default()
            );
            return;
        };
        self.ctx
            .stats
            .record_block_result(0, result, reason.as_deref());
        if result == ShareResult::Accepted {
            self.accepted += 1;
            tracing::info!("{}: block {hash} accepted", self.url());
        } else {
            tracing::error!(
                "{}: block {hash} not accepted: {}; mining resumes on the next block from the network",
                self.url(),
                reason.unwrap_or_default()
            );
        }
        if on_current && !self.done() && !self.ctx.shutdown.is_triggered() {
            if let Some(template) = self.fetch_template() {
                self.use_template(template);
            }
        }
    }

    fn record(&self, record: Value) {
        if let Some(log) = self.ctx.found.journal() {
            log.append_or_log(&record);
        }
    }
}
