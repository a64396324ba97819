//! A small Stratum V2 template provider for the reference pool, since no
//! node here speaks the template distribution protocol: it takes templates
//! from the regtest node by `getblocktemplate`, sends them to the pool with
//! SRI's message types over hashrig's Noise link (as responder), and passes
//! the pool's `SubmitSolution` to the node's `submitblock`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::block::{Header, Version};
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Transaction};
use hashrig::job::gbt::rpc::NodeRpc;
use hashrig::job::stratum::v2::transport::Link;
use hashrig::pow::block::{
    bip34_height_push, coinbase_merkle_branch, serialize_block, BlockTransactions,
};
use hashrig::pow::merkle::merkle_root_from_branch;
use serde_json::{json, Value};
use stratum_core::binary_sv2::{Seq0255, B0255, B064K, U256};
use stratum_core::common_messages_sv2::SetupConnectionSuccess;
use stratum_core::parsers_sv2::{AnyMessage, CommonMessages, TemplateDistribution};
use stratum_core::template_distribution_sv2::{NewTemplate, SetNewPrevHash};

/// A template the pool was sent: what a solution needs to become a block.
#[derive(Clone)]
struct Template {
    id: u64,
    prev_hash: BlockHash,
    bits: CompactTarget,
    transactions: BlockTransactions,
    txids: Vec<[u8; 32]>,
}

/// What the provider saw, for the tests to check.
#[derive(Default)]
pub struct Seen {
    /// `submitblock` answers: `null` is accepted.
    pub submitted: Vec<(BlockHash, Value)>,
}

pub struct TemplateProvider {
    pub port: u16,
    pub seen: Arc<Mutex<Seen>>,
}

impl TemplateProvider {
    /// Listens on a loopback port in a thread of its own; serves the pool
    /// (and its reconnects) until the test process ends.
    pub fn start(rpc: NodeRpc) -> TemplateProvider {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let rpc = Arc::new(rpc);
        let ids = Arc::new(AtomicU64::new(1));
        let port = super::serve_noise(move |link, _| {
            let (rpc, seen, ids) = (rpc.clone(), shared.clone(), ids.clone());
            async move { serve(link, &rpc, &seen, &ids).await }
        });
        TemplateProvider { port, seen }
    }
}

async fn gbt(rpc: &Arc<NodeRpc>) -> Option<Value> {
    let rpc = rpc.clone();
    tokio::task::spawn_blocking(move || rpc.call("getblocktemplate", json!([])).ok())
        .await
        .ok()
        .flatten()
}

fn hash_bytes(text: &str) -> [u8; 32] {
    let mut bytes: [u8; 32] = hex::decode(text).unwrap().try_into().unwrap();
    bytes.reverse();
    bytes
}

/// Sends a new template (future) and its previous block.
async fn send_template(link: &mut Link, ids: &AtomicU64, gbt: &Value) -> Template {
    let id = ids.fetch_add(1, Ordering::SeqCst);
    let mut transactions = BlockTransactions::default();
    for t in gbt["transactions"].as_array().unwrap() {
        transactions.push(&hex::decode(t["data"].as_str().unwrap()).unwrap());
    }
    let txids: Vec<[u8; 32]> = gbt["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| hash_bytes(t["txid"].as_str().or(t["hash"].as_str()).unwrap()))
        .collect();
    let template = Template {
        id,
        prev_hash: BlockHash::from_byte_array(hash_bytes(
            gbt["previousblockhash"].as_str().unwrap(),
        )),
        bits: CompactTarget::from_consensus(
            u32::from_str_radix(gbt["bits"].as_str().unwrap(), 16).unwrap(),
        ),
        transactions,
        txids,
    };
    let height = gbt["height"].as_u64().unwrap() as u32;
    let prefix = bip34_height_push(height).into_bytes();
    let branch = coinbase_merkle_branch(&template.txids);
    let path: Vec<U256> = branch.iter().map(U256::from).collect();
    let new_template = NewTemplate {
        template_id: id,
        future_template: true,
        version: gbt["version"].as_u64().unwrap() as u32,
        coinbase_tx_version: 1,
        coinbase_prefix: B0255::new(&prefix).unwrap(),
        coinbase_tx_input_sequence: u32::MAX,
        coinbase_tx_value_remaining: gbt["coinbasevalue"].as_u64().unwrap(),
        coinbase_tx_outputs_count: 0,
        coinbase_tx_outputs: B064K::new(&[]).unwrap(),
        coinbase_tx_locktime: 0,
        merkle_path: Seq0255::new(path).unwrap(),
    };
    link.send(AnyMessage::TemplateDistribution(
        TemplateDistribution::NewTemplate(new_template),
    ))
    .await
    .unwrap();
    let prev = template.prev_hash.to_byte_array();
    let target = bitcoin::Target::from_compact(template.bits).to_le_bytes();
    let set_prev = SetNewPrevHash {
        template_id: id,
        prev_hash: U256::from(&prev),
        header_timestamp: gbt["curtime"].as_u64().unwrap() as u32,
        n_bits: template.bits.to_consensus(),
        target: U256::from(&target),
    };
    link.send(AnyMessage::TemplateDistribution(
        TemplateDistribution::SetNewPrevHash(set_prev),
    ))
    .await
    .unwrap();
    template
}

async fn serve(mut link: Link, rpc: &Arc<NodeRpc>, seen: &Mutex<Seen>, ids: &AtomicU64) {
    let mut templates: Vec<Template> = Vec::new();
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            frame = link.incoming.recv() => {
                let Some(Ok(mut frame)) = frame else { return };
                let kind = frame.message_type;
                if kind == 0x00 {
                    // SetupConnection (template distribution): accept it.
                    let success = SetupConnectionSuccess { used_version: 2, flags: 0 };
                    link.send(AnyMessage::Common(CommonMessages::SetupConnectionSuccess(success)))
                        .await
                        .unwrap();
                    continue;
                }
                let Ok(message) = TemplateDistribution::try_from((kind, frame.payload.as_mut_slice())) else {
                    continue;
                };
                match message {
                    TemplateDistribution::CoinbaseOutputConstraints(_) => {
                        if let Some(gbt) = gbt(rpc).await {
                            templates.push(send_template(&mut link, ids, &gbt).await);
                        }
                    }
                    TemplateDistribution::SubmitSolution(solution) => {
                        let Some(template) = templates.iter().find(|t| t.id == solution.template_id).cloned() else {
                            continue;
                        };
                        let mut coinbase: Transaction =
                            deserialize(solution.coinbase_tx.as_bytes()).unwrap();
                        // The node (Bitcoin SV) takes no witness data; the
                        // txid, and so the merkle root, never included it.
                        for input in &mut coinbase.input {
                            input.witness.clear();
                        }
                        let coinbase = serialize(&coinbase);
                        let branch = coinbase_merkle_branch(&template.txids);
                        let header = Header {
                            version: Version::from_consensus(solution.version as i32),
                            prev_blockhash: template.prev_hash,
                            merkle_root: merkle_root_from_branch(&coinbase, &branch),
                            time: solution.header_timestamp,
                            bits: template.bits,
                            nonce: solution.header_nonce,
                        };
                        let block = serialize_block(&header, &coinbase, &template.transactions);
                        let hex_block = hex::encode(block);
                        let rpc_call = rpc.clone();
                        let answer = tokio::task::spawn_blocking(move || {
                            rpc_call
                                .call_nullable::<Value>("submitblock", json!([hex_block]))
                                .map(|answer| answer.unwrap_or(Value::Null))
                                .unwrap_or_else(|e| json!(e.to_string()))
                        })
                        .await
                        .unwrap_or(Value::Null);
                        seen.lock().unwrap().submitted.push((header.block_hash(), answer));
                    }
                    _ => {}
                }
            }
            _ = poll.tick() => {
                let Some(last) = templates.last().cloned() else { continue };
                let Some(gbt) = gbt(rpc).await else { continue };
                let prev = BlockHash::from_byte_array(hash_bytes(gbt["previousblockhash"].as_str().unwrap()));
                if prev != last.prev_hash {
                    templates.push(send_template(&mut link, ids, &gbt).await);
                }
            }
        }
    }
}
