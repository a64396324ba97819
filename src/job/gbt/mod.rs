//! Solo mining straight from a node: `getblocktemplate` (long poll, or a
//! poll of the best block when the node has none), a coinbase paying the
//! operator's address, and `submitblock` for every block found, retried
//! until the node answers. Each found block is appended to the found-blocks
//! file before it is submitted.

pub mod rpc;
pub mod template;

use std::collections::{HashSet, VecDeque};
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::{Address, BlockHash, Network, ScriptBuf};
use serde_json::{json, Value};

use crate::job::found_blocks::{unix_now, FoundBlockLog};
use crate::job::{Found, JobSource, JobSourceError, SourceContext};
use crate::pow::block::serialize_block;
use crate::pow::target::target_difficulty;
use crate::shutdown::Shutdown;
use crate::stats::{format_difficulty, ShareResult};
use rpc::{NodeError, NodeRpc};
use template::{assemble, Assembled, BlockTemplate};

/// Templates kept to rebuild blocks found on them.
const RECENT_TEMPLATES: usize = 8;
/// How long a long poll may hang before it is renewed.
const LONGPOLL_TIMEOUT: Duration = Duration::from_secs(300);
/// After shutdown, how long a block submission is still retried (it is in
/// the found-blocks file either way).
const SUBMIT_GRACE: Duration = Duration::from_secs(30);

/// Everything the solo source is told.
#[derive(Debug, Clone)]
pub struct SoloOptions {
    pub rpc: NodeRpc,
    /// The payout address, checked against the node's network at start.
    pub address: String,
    /// Pushed into the coinbase scriptSig after the extranonce.
    pub coinbase_tag: Vec<u8>,
    /// Stop after this many blocks the node accepted.
    pub max_blocks: Option<u64>,
    pub found_blocks: Option<Arc<FoundBlockLog>>,
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

/// The payout script of `address`, which must belong to `network`.
pub fn payout_script(address: &str, network: Network) -> Result<ScriptBuf, String> {
    let parsed = Address::from_str(address)
        .map_err(|e| format!("--address {address:?}: not an address: {e}"))?;
    let checked = parsed.require_network(network).map_err(|_| {
        format!("--address {address:?}: not an address of the node's network ({network})")
    })?;
    Ok(checked.script_pubkey())
}

/// What the main loop waits on.
enum Event {
    Found(Box<Found>),
    Template(Box<BlockTemplate>),
}

/// The solo-mining job source.
pub struct GbtSource {
    options: SoloOptions,
}

impl GbtSource {
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
fn call_until_answered(
    rpc: &NodeRpc,
    method: &str,
    params: &Value,
    shutdown: &Shutdown,
) -> Option<Result<Value, NodeError>> {
    let mut delay = Duration::from_millis(500);
    loop {
        match rpc.call(method, params.clone()) {
            Err(e) if e.is_transient() => {
                tracing::warn!("{e}; retrying in {delay:?}");
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
        let failed = |message: String| JobSourceError::Failed {
            source_name: self.options.rpc.url.clone(),
            message,
        };
        let rpc = &self.options.rpc;
        let Some(info) = call_until_answered(rpc, "getblockchaininfo", &json!([]), &ctx.shutdown)
        else {
            return Ok(());
        };
        let info = info.map_err(|e| failed(e.to_string()))?;
        let chain = info.get("chain").and_then(Value::as_str).unwrap_or("");
        let network = network_of_chain(chain)
            .ok_or_else(|| failed(format!("unknown chain {chain:?} in getblockchaininfo")))?;
        let script = payout_script(&self.options.address, network).map_err(failed)?;
        tracing::info!("solo mining on {chain} to {}", self.options.address);

        let (events, inbox) = mpsc::channel();
        let found = ctx.found;
        let forward = events.clone();
        std::thread::Builder::new()
            .name("solo-found".into())
            .spawn(move || {
                while let Ok(f) = found.recv() {
                    if forward.send(Event::Found(Box::new(f))).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| failed(format!("could not start a thread: {e}")))?;
        let ctx = SourceContext {
            found: mpsc::channel().1,
            ..ctx
        };
        let mut miner = Solo {
            options: &self.options,
            ctx: &ctx,
            script,
            recent: VecDeque::new(),
            current: None,
            solved_parents: HashSet::new(),
            accepted: 0,
        };
        // The first template; then the updater keeps them coming.
        let Some(first) = miner.fetch_template() else {
            return Ok(());
        };
        let longpoll_id = first.longpoll_id.clone();
        miner.use_template(first);
        spawn_updater(
            rpc.clone(),
            longpoll_id,
            self.options.poll_interval,
            events,
            ctx.shutdown.clone(),
        )
        .map_err(|e| failed(format!("could not start a thread: {e}")))?;
        miner.run(&inbox);
        Ok(())
    }
}

/// Sends a template whenever the node has a new one: by long poll when the
/// node offers it, by polling the best block hash otherwise.
fn spawn_updater(
    rpc: NodeRpc,
    longpoll_id: Option<String>,
    poll_interval: Duration,
    events: Sender<Event>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("solo-templates".into())
        .spawn(move || {
            let long = rpc.with_timeout(LONGPOLL_TIMEOUT);
            let mut longpoll_id = longpoll_id;
            let mut best: Option<Value> = None;
            let mut delay = Duration::from_millis(500);
            while !shutdown.is_triggered() {
                let fetched = match &longpoll_id {
                    Some(id) => long.call("getblocktemplate", gbt_params(Some(id))),
                    None => {
                        if shutdown.wait_timeout(poll_interval) {
                            break;
                        }
                        match rpc.call("getbestblockhash", json!([])) {
                            Ok(hash) if Some(&hash) == best.as_ref() => continue,
                            Ok(hash) => {
                                best = Some(hash);
                                rpc.call("getblocktemplate", gbt_params(None))
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                match fetched.map(|v| BlockTemplate::try_from(&v)) {
                    Ok(Ok(template)) => {
                        delay = Duration::from_millis(500);
                        if template.longpoll_id.is_some() {
                            longpoll_id = template.longpoll_id.clone();
                        }
                        if events.send(Event::Template(Box::new(template))).is_err() {
                            break;
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::error!("{e}; not mined");
                        shutdown.wait_timeout(delay);
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                    Err(e) => {
                        tracing::warn!("{e}; retrying in {delay:?}");
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
    /// Recently published jobs by generation, with their block parts.
    recent: VecDeque<(u64, Arc<Assembled>)>,
    /// The template being mined.
    current: Option<BlockTemplate>,
    /// Parents a block was found on: one block per parent can win.
    solved_parents: HashSet<BlockHash>,
    accepted: u64,
}

impl Solo<'_> {
    fn url(&self) -> &str {
        &self.options.rpc.url
    }

    fn run(&mut self, inbox: &Receiver<Event>) {
        while !self.ctx.shutdown.is_triggered() && !self.done() {
            match inbox.recv_timeout(Duration::from_millis(100)) {
                Ok(Event::Template(t)) => self.use_template(*t),
                Ok(Event::Found(f)) => self.on_found(*f),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.ctx.work.withdraw();
    }

    fn done(&self) -> bool {
        self.options.max_blocks.is_some_and(|n| self.accepted >= n)
    }

    /// A template from the node, retried until it answers with a usable one.
    fn fetch_template(&self) -> Option<BlockTemplate> {
        let mut delay = Duration::from_millis(500);
        loop {
            let answer = call_until_answered(
                &self.options.rpc,
                "getblocktemplate",
                &gbt_params(None),
                &self.ctx.shutdown,
            )?;
            let problem = match answer {
                Ok(value) => match BlockTemplate::try_from(&value) {
                    Ok(template) => return Some(template),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
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
                && current.transactions.len() == template.transactions.len()
                && current
                    .transactions
                    .iter()
                    .zip(&template.transactions)
                    .all(|(a, b)| a.txid == b.txid);
            if same {
                return;
            }
        }
        if self.solved_parents.contains(&template.prev_hash) {
            // Our block on this parent is in flight; wait for the next tip.
            return;
        }
        let new_parent = self
            .current
            .as_ref()
            .is_none_or(|c| c.prev_hash != template.prev_hash);
        let assembled = match assemble(&template, &self.script, &self.options.coinbase_tag) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("{}: {e}; not mined", self.url());
                if new_parent {
                    self.ctx.work.withdraw();
                }
                return;
            }
        };
        let mut job = assembled.job.clone();
        job.clean = new_parent;
        let published = self.ctx.work.publish(job);
        let difficulty = target_difficulty(&published.share_target);
        self.ctx.stats.set_network_difficulty(Some(difficulty));
        tracing::info!(
            "{}: template for height {} ({} transactions, difficulty {})",
            self.url(),
            template.height,
            template.transactions.len(),
            format_difficulty(difficulty)
        );
        self.recent
            .push_back((published.generation, Arc::new(assembled)));
        while self.recent.len() > RECENT_TEMPLATES {
            self.recent.pop_front();
        }
        self.current = Some(template);
    }

    fn on_found(&mut self, found: Found) {
        if !found.is_block {
            return;
        }
        let generation = found.work.job.generation;
        let Some(assembled) = self
            .recent
            .iter()
            .find(|(g, _)| *g == generation)
            .map(|(_, a)| a.clone())
        else {
            tracing::warn!("a block on a template no longer kept: {}", found.hash);
            return;
        };
        let parent = found.work.job.prev_hash;
        if !self.solved_parents.insert(parent) {
            return; // another nonce of the same parent: only one can win
        }
        // Devices stop this template until the next arrives.
        self.ctx.work.withdraw();
        self.ctx.stats.record_block(found.device);
        let header = found.header();
        let coinbase = assembled
            .coinbase
            .block_serialization(&found.work.extranonce2);
        let block = hex::encode(serialize_block(&header, &coinbase, &assembled.transactions));
        tracing::warn!(
            "BLOCK found at height {} by device {}: {}",
            assembled.height,
            found.device,
            found.hash
        );
        self.record(json!({
            "found_at": unix_now(),
            "source": "solo",
            "node": self.url(),
            "height": assembled.height,
            "hash": found.hash.to_string(),
            "block": block,
        }));
        let (result, reason) = self.submit(&block);
        self.record(json!({"hash": found.hash.to_string(), "result": reason.as_deref().unwrap_or("accepted")}));
        let difficulty = target_difficulty(&found.work.job.share_target);
        self.ctx
            .stats
            .record_pool_result(0, found.device, result, difficulty, reason.as_deref());
        match result {
            ShareResult::Accepted => {
                self.accepted += 1;
                tracing::info!("{}: block {} accepted", self.url(), found.hash);
            }
            _ => {
                tracing::warn!(
                    "{}: block {} not accepted: {}",
                    self.url(),
                    found.hash,
                    reason.unwrap_or_default()
                );
                // Mine this parent again.
                self.solved_parents.remove(&parent);
                self.current = None;
            }
        }
        if self.solved_parents.len() > 64 {
            self.solved_parents.clear();
            self.solved_parents.insert(parent);
        }
        if !self.done() {
            if let Some(template) = self.fetch_template() {
                self.use_template(template);
            }
        }
    }

    fn record(&self, record: Value) {
        if let Some(log) = &self.options.found_blocks {
            if let Err(e) = log.append(&record) {
                tracing::error!(
                    "could not write to {}: {e}; record: {record}",
                    log.path().display()
                );
            }
        }
    }

    /// Submits until the node answers; its answer as a result and reason.
    fn submit(&self, block: &str) -> (ShareResult, Option<String>) {
        let mut delay = Duration::from_millis(250);
        let mut stopping_since: Option<Instant> = None;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match self.options.rpc.call("submitblock", json!([block])) {
                Ok(Value::Null) => return (ShareResult::Accepted, None),
                Ok(Value::String(reason)) => {
                    let reason: String = reason.chars().take(200).collect();
                    return match reason.as_str() {
                        // An earlier attempt got through before the link broke.
                        "duplicate" if attempts > 1 => (ShareResult::Accepted, None),
                        "inconclusive" => (ShareResult::Stale, Some(reason)),
                        _ => (ShareResult::Rejected, Some(reason)),
                    };
                }
                Ok(other) => {
                    return (
                        ShareResult::Rejected,
                        Some(format!(
                            "unexpected answer {}",
                            other.to_string().chars().take(80).collect::<String>()
                        )),
                    );
                }
                Err(NodeError::Rpc { message, code, .. }) => {
                    return (
                        ShareResult::Rejected,
                        Some(format!("{message} (code {code})")),
                    );
                }
                Err(e) => {
                    if self.ctx.shutdown.is_triggered() {
                        let since = *stopping_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > SUBMIT_GRACE {
                            tracing::error!(
                                "giving up submitting the block: {e}; it is in the found-blocks file"
                            );
                            return (ShareResult::Stale, Some(format!("not submitted: {e}")));
                        }
                    }
                    tracing::warn!("submitting the block: {e}; retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
