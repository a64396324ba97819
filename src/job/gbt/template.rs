//! `getblocktemplate` (BIP 22, BIP 23; BIP 141's `default_witness_commitment`
//! and weight limit) parsed once from untrusted JSON into [`BlockTemplate`],
//! and assembled with a payout into a [`Job`] and the parts of its block.

use std::str::FromStr;
use std::sync::Arc;

use bitcoin::consensus::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, ScriptBuf, Target, Transaction, Txid};
use serde_json::Value;

use crate::job::{Job, Origin};
use crate::pow::block::{
    coinbase_merkle_branch, BlockBody, CoinbaseError, CoinbaseParts, CoinbaseSpec, SOLO_EXTRANONCE,
};

/// Most transactions accepted in one template.
const MAX_TRANSACTIONS: usize = 200_000;
/// How far past the template's time ntime is rolled (when `time` is mutable).
const TIME_ROLL: u32 = 600;

/// A template field that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    #[error("block template: {field} is missing")]
    Missing { field: &'static str },
    #[error("block template: {field} is not {expected}: {value}")]
    Bad {
        field: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("block template: transaction {index}: {problem}")]
    Transaction { index: usize, problem: String },
    #[error(
        "block template: the block would be {actual} {unit}, over the template's limit of {limit}"
    )]
    TooLarge {
        unit: &'static str,
        actual: u64,
        limit: u64,
    },
    #[error(transparent)]
    Coinbase(#[from] CoinbaseError),
}

/// One transaction of a template, checked: its txid is the hash of its data.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateTransaction {
    pub data: Vec<u8>,
    pub txid: Txid,
    pub weight: u64,
}

/// A block template, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockTemplate {
    pub version: i32,
    pub prev_hash: BlockHash,
    pub height: u32,
    pub bits: CompactTarget,
    pub curtime: u32,
    pub mintime: u32,
    pub coinbase_value: u64,
    pub transactions: Vec<TemplateTransaction>,
    pub longpoll_id: Option<String>,
    /// `mutable` allows the miner to change the time.
    pub time_mutable: bool,
    pub size_limit: Option<u64>,
    pub weight_limit: Option<u64>,
    pub witness_commitment: Option<ScriptBuf>,
}

fn shown(value: &Value) -> String {
    value.to_string().chars().take(80).collect()
}

fn field<'a>(t: &'a Value, name: &'static str) -> Result<&'a Value, TemplateError> {
    t.get(name).ok_or(TemplateError::Missing { field: name })
}

fn bad(field: &'static str, expected: &'static str, value: &Value) -> TemplateError {
    TemplateError::Bad {
        field,
        expected,
        value: shown(value),
    }
}

fn unsigned(t: &Value, name: &'static str, max: u64) -> Result<u64, TemplateError> {
    let v = field(t, name)?;
    v.as_u64()
        .filter(|n| *n <= max)
        .ok_or_else(|| bad(name, "a non-negative integer in range", v))
}

fn optional_unsigned(t: &Value, name: &'static str) -> Result<Option<u64>, TemplateError> {
    match t.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => unsigned(t, name, u64::MAX).map(Some),
    }
}

impl TryFrom<&Value> for BlockTemplate {
    type Error = TemplateError;

    fn try_from(t: &Value) -> Result<Self, TemplateError> {
        if !t.is_object() {
            return Err(bad("template", "a JSON object", t));
        }
        let version = unsigned(t, "version", u64::from(u32::MAX))? as u32 as i32;
        let prev = field(t, "previousblockhash")?;
        let prev_hash = prev
            .as_str()
            .and_then(|s| BlockHash::from_str(s).ok())
            .ok_or_else(|| bad("previousblockhash", "64 hex digits", prev))?;
        let height = unsigned(t, "height", u64::from(u32::MAX))? as u32;
        let bits_value = field(t, "bits")?;
        let bits = bits_value
            .as_str()
            .filter(|s| s.len() == 8)
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .map(CompactTarget::from_consensus)
            .ok_or_else(|| bad("bits", "8 hex digits", bits_value))?;
        if Target::from_compact(bits) == Target::ZERO {
            return Err(bad("bits", "a target above zero", bits_value));
        }
        let curtime = unsigned(t, "curtime", u64::from(u32::MAX))? as u32;
        let mintime = optional_unsigned(t, "mintime")?
            .unwrap_or(0)
            .min(u64::from(u32::MAX)) as u32;
        // 21 million coins in satoshis bounds any honest reward.
        let coinbase_value = unsigned(t, "coinbasevalue", 21_000_000 * 100_000_000)?;
        let list = field(t, "transactions")?;
        let list = list
            .as_array()
            .filter(|l| l.len() <= MAX_TRANSACTIONS)
            .ok_or_else(|| bad("transactions", "a list", list))?;
        let transactions = list
            .iter()
            .enumerate()
            .map(|(index, tx)| parse_transaction(index, tx))
            .collect::<Result<_, _>>()?;
        let longpoll_id = match t.get("longpollid") {
            Some(Value::String(s)) if s.len() <= 256 => Some(s.clone()),
            None | Some(Value::Null) => None,
            Some(other) => return Err(bad("longpollid", "a short string", other)),
        };
        // BIP 23: without `mutable`, time may be changed.
        let time_mutable = match t.get("mutable") {
            None | Some(Value::Null) => true,
            Some(Value::Array(items)) => items
                .iter()
                .any(|m| matches!(m.as_str(), Some("time" | "time/increment"))),
            Some(other) => return Err(bad("mutable", "a list", other)),
        };
        let witness_commitment = match t.get("default_witness_commitment") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(|s| hex::decode(s).ok())
                    .filter(|b| {
                        b.len() >= 38
                            && b.len() <= 100
                            && b.starts_with(&[0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed])
                    })
                    .map(ScriptBuf::from_bytes)
                    .ok_or_else(|| {
                        bad(
                            "default_witness_commitment",
                            "a BIP 141 commitment script",
                            v,
                        )
                    })?,
            ),
        };
        Ok(BlockTemplate {
            version,
            prev_hash,
            height,
            bits,
            curtime,
            mintime,
            coinbase_value,
            transactions,
            longpoll_id,
            time_mutable,
            size_limit: optional_unsigned(t, "sizelimit")?,
            weight_limit: optional_unsigned(t, "weightlimit")?,
            witness_commitment,
        })
    }
}

fn parse_transaction(index: usize, tx: &Value) -> Result<TemplateTransaction, TemplateError> {
    let problem = |problem: String| TemplateError::Transaction { index, problem };
    let data = tx
        .get("data")
        .and_then(Value::as_str)
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| problem("data is missing or not hex".into()))?;
    let parsed: Transaction =
        deserialize(&data).map_err(|e| problem(format!("data is not a transaction: {e}")))?;
    let txid = parsed.compute_txid();
    if let Some(given) = tx.get("txid") {
        let given = given
            .as_str()
            .and_then(|s| Txid::from_str(s).ok())
            .ok_or_else(|| problem(format!("txid is not 64 hex digits: {}", shown(given))))?;
        if given != txid {
            return Err(problem(format!(
                "txid {given} is not the hash of its data ({txid})"
            )));
        }
    }
    Ok(TemplateTransaction {
        data,
        txid,
        weight: parsed.weight().to_wu(),
    })
}

/// Builds the coinbase paying `payout_script`, the job (carrying the rest
/// of its block, so a block found on it is complete the moment it is
/// verified), and checks the block against the template's size and weight
/// limits. Solo mining has no shares: the job's share target is zero.
pub fn assemble(
    template: &BlockTemplate,
    payout_script: &ScriptBuf,
    tag: &[u8],
    origin: Origin,
) -> Result<Job, TemplateError> {
    let coinbase = CoinbaseParts::build(&CoinbaseSpec {
        height: template.height,
        value: template.coinbase_value,
        payout_script,
        tag,
        witness_commitment: template.witness_commitment.as_ref(),
    })?;
    let (coinbase_size, coinbase_weight) = coinbase.size_and_weight();
    let tx_count = 1 + template.transactions.len() as u64;
    let count_size = bitcoin::consensus::encode::VarInt(tx_count).size() as u64;
    let size = 80
        + count_size
        + coinbase_size as u64
        + template
            .transactions
            .iter()
            .map(|t| t.data.len() as u64)
            .sum::<u64>();
    let weight = 4 * (80 + count_size)
        + coinbase_weight as u64
        + template.transactions.iter().map(|t| t.weight).sum::<u64>();
    if let Some(limit) = template.size_limit.filter(|l| size > *l) {
        return Err(TemplateError::TooLarge {
            unit: "bytes",
            actual: size,
            limit,
        });
    }
    if let Some(limit) = template.weight_limit.filter(|l| weight > *l) {
        return Err(TemplateError::TooLarge {
            unit: "weight units",
            actual: weight,
            limit,
        });
    }
    let txids: Vec<[u8; 32]> = template
        .transactions
        .iter()
        .map(|t| t.txid.to_byte_array())
        .collect();
    let body = BlockBody {
        height: template.height,
        coinbase,
        transactions: template
            .transactions
            .iter()
            .map(|t| t.data.clone())
            .collect(),
    };
    Ok(Job {
        id: format!("{}", template.height),
        generation: 0,
        version: template.version,
        version_mask: 0,
        prev_hash: template.prev_hash,
        coinbase1: body.coinbase.prefix.clone(),
        coinbase2: body.coinbase.suffix.clone(),
        extranonce1: Vec::new(),
        extranonce2_size: SOLO_EXTRANONCE,
        merkle_branch: coinbase_merkle_branch(&txids),
        bits: template.bits,
        time: template.curtime.max(template.mintime),
        max_time_roll: if template.time_mutable { TIME_ROLL } else { 0 },
        clean: true,
        share_target: Target::ZERO,
        origin,
        block_body: Some(Arc::new(body)),
        merkle_root: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pow::block::serialize_block;
    use bitcoin::absolute::LockTime;
    use bitcoin::block::{Header, Version};
    use bitcoin::consensus::serialize;
    use bitcoin::hashes::Hash;
    use bitcoin::{
        transaction, Amount, Block, OutPoint, Sequence, TxIn, TxOut, Witness, WitnessMerkleNode,
    };
    use serde_json::json;

    /// A segwit spend with a witness, so its wtxid differs from its txid.
    fn segwit_tx(seed: u8) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array([seed; 32]),
                    vout: 0,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[vec![seed; 72], vec![2; 33]]),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(10_000 + u64::from(seed)),
                script_pubkey: ScriptBuf::from_bytes([vec![0x00, 0x14], vec![seed; 20]].concat()),
            }],
        }
    }

    /// A template in Bitcoin Core's shape (BIP 22/23 fields, BIP 141's
    /// segwit rule, default_witness_commitment and weight limit), written
    /// here with the commitment computed by rust-bitcoin.
    fn core_template(txs: &[Transaction]) -> Value {
        let mut wtxids = vec![WitnessMerkleNode::all_zeros().to_raw_hash()];
        wtxids.extend(txs.iter().map(|t| t.compute_wtxid().to_raw_hash()));
        let witness_root = WitnessMerkleNode::from_raw_hash(
            bitcoin::merkle_tree::calculate_root(wtxids.into_iter()).unwrap(),
        );
        let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
        json!({
            "capabilities": ["proposal"],
            "version": 0x2000_0000,
            "rules": ["csv", "!segwit", "taproot"],
            "vbavailable": {},
            "vbrequired": 0,
            "previousblockhash": "0000000000000000000157b4c3ff9ba2a87f7a2e0a33e3e3d3f3a1c5b8e9f0a1",
            "transactions": txs.iter().enumerate().map(|(i, t)| json!({
                "data": hex::encode(serialize(t)),
                "txid": t.compute_txid().to_string(),
                "hash": t.compute_wtxid().to_string(),
                "depends": [],
                "fee": 1000 + i,
                "sigops": 1,
                "weight": t.weight().to_wu(),
            })).collect::<Vec<_>>(),
            "coinbaseaux": {},
            "coinbasevalue": 312_500_000u64 + 2000,
            "longpollid": "0000000000000000000157b4c3ff9ba2a87f7a2e0a33e3e3d3f3a1c5b8e9f0a1123",
            "target": "00000000000000000003a30c0000000000000000000000000000000000000000",
            "mintime": 1_732_000_000,
            "mutable": ["time", "transactions", "prevblock"],
            "noncerange": "00000000ffffffff",
            "sigoplimit": 80000,
            "sizelimit": 4_000_000,
            "weightlimit": 4_000_000,
            "curtime": 1_732_000_100,
            "bits": "17034219",
            "height": 872_000,
            "default_witness_commitment": hex::encode(commitment_script(&commitment)),
        })
    }

    fn commitment_script(commitment: &bitcoin::WitnessCommitment) -> Vec<u8> {
        [
            vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed],
            commitment.to_byte_array().to_vec(),
        ]
        .concat()
    }

    fn payout() -> ScriptBuf {
        ScriptBuf::from_bytes(hex::decode("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap())
    }

    fn node() -> Origin {
        Origin::new(crate::job::SourceKind::Node, 0, "http://127.0.0.1:8332")
    }

    #[test]
    fn core_template_assembles_into_a_block_rust_bitcoin_accepts() {
        let txs = [segwit_tx(1), segwit_tx(2), segwit_tx(3)];
        let template = BlockTemplate::try_from(&core_template(&txs)).unwrap();
        assert!(template.witness_commitment.is_some());
        assert_eq!(template.weight_limit, Some(4_000_000));
        let job = assemble(&template, &payout(), b"/hashrig/", node()).unwrap();
        let extranonce = [7u8; 8];
        let mut coinbase = job.coinbase1.clone();
        coinbase.extend_from_slice(&extranonce);
        coinbase.extend_from_slice(&job.coinbase2);
        let header = Header {
            version: Version::from_consensus(job.version),
            prev_blockhash: job.prev_hash,
            merkle_root: crate::pow::merkle::merkle_root_from_branch(&coinbase, &job.merkle_branch),
            time: job.time,
            bits: job.bits,
            nonce: 42,
        };
        let body = job.block_body.as_ref().unwrap();
        let bytes = body.block_bytes(&header, &extranonce);
        assert_eq!(
            bytes,
            serialize_block(
                &header,
                &body.coinbase.block_serialization(&extranonce),
                &body.transactions
            )
        );
        assert_eq!(job.share_target, Target::ZERO, "solo takes no shares");
        let block: Block = bitcoin::consensus::deserialize(&bytes).unwrap();
        assert!(block.check_merkle_root(), "merkle root");
        assert!(block.check_witness_commitment(), "witness commitment");
        assert_eq!(block.bip34_block_height().unwrap(), 872_000);
        assert_eq!(block.txdata[0].output[0].script_pubkey, payout());
        assert_eq!(block.txdata[0].output[0].value.to_sat(), 312_502_000);
        assert_eq!(block.txdata.len(), 4);
        assert!(block.weight().to_wu() <= 4_000_000);
        assert_eq!(job.time, 1_732_000_100);
        assert_eq!(job.max_time_roll, TIME_ROLL);
    }

    #[test]
    fn the_templates_own_limits_are_enforced() {
        let txs = [segwit_tx(1)];
        let mut t = core_template(&txs);
        t["weightlimit"] = json!(1000);
        let template = BlockTemplate::try_from(&t).unwrap();
        assert!(matches!(
            assemble(&template, &payout(), b"", node()),
            Err(TemplateError::TooLarge {
                unit: "weight units",
                ..
            })
        ));
        t["weightlimit"] = json!(4_000_000);
        t["sizelimit"] = json!(200);
        let template = BlockTemplate::try_from(&t).unwrap();
        assert!(matches!(
            assemble(&template, &payout(), b"", node()),
            Err(TemplateError::TooLarge { unit: "bytes", .. })
        ));
    }

    #[test]
    fn bad_templates_are_errors_naming_the_field() {
        let good = core_template(&[segwit_tx(1)]);
        assert!(BlockTemplate::try_from(&good).is_ok());
        let cases: [(&str, Value, &str); 9] = [
            ("previousblockhash", json!("00"), "previousblockhash"),
            ("bits", json!("zz"), "bits"),
            ("bits", json!("00000000"), "bits"),
            ("height", json!(-1), "height"),
            ("coinbasevalue", json!("50"), "coinbasevalue"),
            ("transactions", json!({}), "transactions"),
            ("transactions", json!([{"data": "zz"}]), "transaction 0"),
            (
                "default_witness_commitment",
                json!("6a"),
                "default_witness_commitment",
            ),
            ("mutable", json!("time"), "mutable"),
        ];
        for (name, value, expected) in cases {
            let mut t = good.clone();
            t[name] = value;
            let err = BlockTemplate::try_from(&t).unwrap_err().to_string();
            assert!(err.contains(expected), "{name}: {err}");
        }
        for name in [
            "previousblockhash",
            "bits",
            "height",
            "curtime",
            "coinbasevalue",
            "transactions",
        ] {
            let mut t = good.clone();
            t.as_object_mut().unwrap().remove(name);
            let err = BlockTemplate::try_from(&t).unwrap_err();
            assert_eq!(err, TemplateError::Missing { field: name });
        }
        // A txid that is not the hash of the data: garbage, refused.
        let mut t = good.clone();
        t["transactions"][0]["txid"] = json!("11".repeat(32));
        assert!(BlockTemplate::try_from(&t)
            .unwrap_err()
            .to_string()
            .contains("not the hash"));
        assert!(BlockTemplate::try_from(&json!("<html>")).is_err());
    }

    #[test]
    fn node_template_from_the_regtest_node_parses() {
        let text = include_str!("../../../tests/data/regtest_template_bsv.json");
        let template =
            BlockTemplate::try_from(&serde_json::from_str::<Value>(text).unwrap()).unwrap();
        assert_eq!(template.height, 2);
        assert_eq!(template.coinbase_value, 5_000_000_000);
        assert!(template.longpoll_id.is_some() && template.time_mutable);
        assert_eq!(template.witness_commitment, None);
    }
}
