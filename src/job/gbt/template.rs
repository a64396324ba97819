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
    coinbase_merkle_branch, BlockBody, BlockTransactions, CoinbaseError, CoinbaseParts,
    CoinbaseSpec, SOLO_EXTRANONCE,
};

/// Most transactions accepted in one template.
const MAX_TRANSACTIONS: usize = 200_000;
/// How far past the template's time ntime is rolled (when `time` is mutable).
const TIME_ROLL: u32 = 600;

/// A template field that is missing or wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A field the template must have is missing.
    #[error("block template: {field} is missing")]
    Missing {
        /// The template field.
        field: &'static str,
    },
    /// A field of the wrong form.
    #[error("block template: {field} is not {expected}: {value}")]
    Bad {
        /// The template field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is (its first characters).
        value: String,
    },
    /// The template is not JSON of the expected shape.
    #[error("block template: {path}")]
    Json {
        /// Where in the JSON the problem is.
        path: String,
        /// The JSON parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A transaction that is missing or is not what its entry says.
    #[error("block template: transaction {index}")]
    Transaction {
        /// The transaction's position in the template.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: TransactionError,
    },
    /// The template is larger than hashrig takes.
    #[error(
        "block template: the block would be {actual} {unit}, over the template's limit of {limit}"
    )]
    TooLarge {
        /// What is counted: bytes, weight units, transactions.
        unit: &'static str,
        /// The template's amount.
        actual: u64,
        /// The most hashrig takes.
        limit: u64,
    },
    /// The coinbase cannot be built.
    #[error(transparent)]
    Coinbase(#[from] CoinbaseError),
}

/// A block template, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockTemplate {
    /// The block version.
    pub version: i32,
    /// The previous block.
    pub prev_hash: BlockHash,
    /// The height of the block being built.
    pub height: u32,
    /// The network target's compact form.
    pub bits: CompactTarget,
    pub(crate) curtime: u32,
    pub(crate) mintime: u32,
    pub(crate) coinbase_value: u64,
    /// The transactions after the coinbase, each checked (its txid is the
    /// hash of its data); shared with every job assembled from it.
    pub transactions: Arc<BlockTransactions>,
    /// Their txids, in block order.
    pub txids: Vec<Txid>,
    /// Their weight, in all (BIP 141).
    pub transactions_weight: u64,
    pub(crate) longpoll_id: Option<String>,
    /// `mutable` allows the miner to change the time.
    pub time_mutable: bool,
    pub(crate) size_limit: Option<u64>,
    pub(crate) weight_limit: Option<u64>,
    pub(crate) witness_commitment: Option<ScriptBuf>,
}

/// A template as the node's JSON has it, typed as it is read: only the
/// fields used are kept, each bounded by its type (transaction data is
/// decoded from hex as it arrives, the list cut off past
/// [`MAX_TRANSACTIONS`]); the rest is skipped unread. Checked into a
/// [`BlockTemplate`] by `TryFrom`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct RawTemplate {
    version: Option<u32>,
    previousblockhash: Option<String>,
    height: Option<u32>,
    bits: Option<String>,
    curtime: Option<u32>,
    mintime: Option<u64>,
    coinbasevalue: Option<u64>,
    transactions: Option<RawTransactions>,
    longpollid: Option<String>,
    mutable: Option<MutableTime>,
    sizelimit: Option<u64>,
    weightlimit: Option<u64>,
    default_witness_commitment: Option<String>,
}

/// One transaction as the template lists it; `hash`, `fee`, `depends` and
/// the rest are not needed and not kept.
#[derive(Debug, serde::Deserialize)]
struct RawTransaction {
    data: Option<HexBytes>,
    txid: Option<String>,
}

/// Bytes given as hex, decoded straight from the parser's buffer.
#[derive(Debug)]
struct HexBytes(Vec<u8>);

impl<'de> serde::Deserialize<'de> for HexBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = HexBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("hex")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<HexBytes, E> {
                hex::decode(text)
                    .map(HexBytes)
                    .map_err(|e| E::custom(format!("not hex ({e})")))
            }
        }
        deserializer.deserialize_str(Hex)
    }
}

/// The transaction list, refused as soon as it passes [`MAX_TRANSACTIONS`].
#[derive(Debug)]
struct RawTransactions(Vec<RawTransaction>);

impl<'de> serde::Deserialize<'de> for RawTransactions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> serde::de::Visitor<'de> for List {
            type Value = RawTransactions;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a list of at most {MAX_TRANSACTIONS} transactions")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawTransactions, A::Error> {
                let mut list = Vec::new();
                while let Some(tx) = seq.next_element::<RawTransaction>()? {
                    if list.len() == MAX_TRANSACTIONS {
                        return Err(serde::de::Error::custom(format!(
                            "more than {MAX_TRANSACTIONS} transactions"
                        )));
                    }
                    list.push(tx);
                }
                Ok(RawTransactions(list))
            }
        }
        deserializer.deserialize_seq(List)
    }
}

/// BIP 23's `mutable` list, read for one fact: may the time change? The
/// entries are looked at one by one and not kept.
#[derive(Debug)]
struct MutableTime(bool);

impl<'de> serde::Deserialize<'de> for MutableTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> serde::de::Visitor<'de> for List {
            type Value = MutableTime;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<MutableTime, A::Error> {
                let mut time = false;
                while let Some(entry) = seq.next_element::<MutableEntry>()? {
                    time |= entry.0;
                }
                Ok(MutableTime(time))
            }
        }
        deserializer.deserialize_seq(List)
    }
}

/// One entry of `mutable`: whether it allows changing the time. An entry
/// of another shape is read through and counts for nothing.
struct MutableEntry(bool);

impl<'de> serde::Deserialize<'de> for MutableEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = MutableEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mutable entry")
            }
            fn visit_str<E>(self, text: &str) -> Result<MutableEntry, E> {
                Ok(MutableEntry(matches!(text, "time" | "time/increment")))
            }
            fn visit_bool<E>(self, _: bool) -> Result<MutableEntry, E> {
                Ok(MutableEntry(false))
            }
            fn visit_i64<E>(self, _: i64) -> Result<MutableEntry, E> {
                Ok(MutableEntry(false))
            }
            fn visit_u64<E>(self, _: u64) -> Result<MutableEntry, E> {
                Ok(MutableEntry(false))
            }
            fn visit_f64<E>(self, _: f64) -> Result<MutableEntry, E> {
                Ok(MutableEntry(false))
            }
            fn visit_unit<E>(self) -> Result<MutableEntry, E> {
                Ok(MutableEntry(false))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<MutableEntry, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(MutableEntry(false))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<MutableEntry, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(MutableEntry(false))
            }
        }
        deserializer.deserialize_any(Entry)
    }
}

fn shown(text: &str) -> String {
    format!("{:?}", text.chars().take(80).collect::<String>())
}

fn bad(field: &'static str, expected: &'static str, value: String) -> TemplateError {
    TemplateError::Bad {
        field,
        expected,
        value,
    }
}

/// What is wrong with one of a template's transactions (BIP 22's
/// `transactions` entries).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// The entry has no `data`.
    #[error("data is missing")]
    NoData,
    /// `data` does not decode as a transaction.
    #[error("data is not a transaction")]
    NotATransaction(#[source] bitcoin::consensus::encode::Error),
    /// `txid` is not a txid.
    #[error("txid is not 64 hex digits: {given}")]
    BadTxid {
        /// The txid given (its first characters).
        given: String,
    },
    /// `txid` is not the hash of `data`.
    #[error("txid {given} is not the hash of its data ({computed})")]
    WrongTxid {
        /// The txid the node gave.
        given: Txid,
        /// The hash of the data.
        computed: Txid,
    },
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, TemplateError> {
    value.ok_or(TemplateError::Missing { field })
}

impl TryFrom<&Value> for BlockTemplate {
    type Error = TemplateError;

    /// A template already parsed as JSON (tests, tools): read through the
    /// same typed path as a node's answer.
    fn try_from(t: &Value) -> Result<Self, TemplateError> {
        let raw: RawTemplate =
            serde_path_to_error::deserialize(t).map_err(|e| TemplateError::Json {
                path: e.path().to_string(),
                source: e.into_inner(),
            })?;
        BlockTemplate::try_from(raw)
    }
}

impl TryFrom<RawTemplate> for BlockTemplate {
    type Error = TemplateError;

    fn try_from(t: RawTemplate) -> Result<Self, TemplateError> {
        let version = required(t.version, "version")? as i32;
        let prev = required(t.previousblockhash, "previousblockhash")?;
        let prev_hash = BlockHash::from_str(&prev)
            .map_err(|_| bad("previousblockhash", "64 hex digits", shown(&prev)))?;
        let height = required(t.height, "height")?;
        let bits_text = required(t.bits, "bits")?;
        let bits = Some(&bits_text)
            .filter(|s| s.len() == 8)
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .map(CompactTarget::from_consensus)
            .ok_or_else(|| bad("bits", "8 hex digits", shown(&bits_text)))?;
        if Target::from_compact(bits) == Target::ZERO {
            return Err(bad("bits", "a target above zero", shown(&bits_text)));
        }
        let curtime = required(t.curtime, "curtime")?;
        let mintime = t.mintime.unwrap_or(0).min(u64::from(u32::MAX)) as u32;
        let coinbase_value = required(t.coinbasevalue, "coinbasevalue")?;
        // 21 million coins in satoshis bounds any honest reward.
        if coinbase_value > 21_000_000 * 100_000_000 {
            return Err(bad(
                "coinbasevalue",
                "at most 21 million coins",
                coinbase_value.to_string(),
            ));
        }
        let (transactions, txids, transactions_weight) =
            check_transactions(required(t.transactions, "transactions")?)?;
        let longpoll_id = match t.longpollid {
            Some(s) if s.len() > 256 => {
                return Err(bad("longpollid", "a short string", shown(&s)));
            }
            other => other,
        };
        // BIP 23: without `mutable`, time may be changed.
        let time_mutable = t.mutable.is_none_or(|m| m.0);
        let witness_commitment = t
            .default_witness_commitment
            .map(|text| witness_commitment(&text))
            .transpose()?;
        Ok(BlockTemplate {
            version,
            prev_hash,
            height,
            bits,
            curtime,
            mintime,
            coinbase_value,
            transactions: Arc::new(transactions),
            txids,
            transactions_weight,
            longpoll_id,
            time_mutable,
            size_limit: t.sizelimit,
            weight_limit: t.weightlimit,
            witness_commitment,
        })
    }
}

/// Every transaction checked, its bytes moved into the block's buffer (and
/// freed one by one); with their txids and total weight.
fn check_transactions(
    raw: RawTransactions,
) -> Result<(BlockTransactions, Vec<Txid>, u64), TemplateError> {
    let mut transactions = BlockTransactions::default();
    let mut txids = Vec::with_capacity(raw.0.len());
    let mut weight = 0;
    for (index, tx) in raw.0.into_iter().enumerate() {
        let data = tx.data.ok_or(TemplateError::Transaction {
            index,
            source: TransactionError::NoData,
        })?;
        let (txid, tx_weight) = check_transaction(index, &data.0, tx.txid)?;
        transactions.push(&data.0);
        txids.push(txid);
        weight += tx_weight;
    }
    transactions.shrink_to_fit();
    Ok((transactions, txids, weight))
}

/// BIP 141's commitment output script, as the template gives it in hex.
fn witness_commitment(text: &str) -> Result<ScriptBuf, TemplateError> {
    hex::decode(text)
        .ok()
        .filter(|b| {
            b.len() >= 38 && b.len() <= 100 && b.starts_with(&[0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed])
        })
        .map(ScriptBuf::from_bytes)
        .ok_or_else(|| {
            bad(
                "default_witness_commitment",
                "a BIP 141 commitment script",
                shown(text),
            )
        })
}

/// The txid and weight of transaction `index`, whose txid, when the node
/// gave one, must be the hash of its data.
fn check_transaction(
    index: usize,
    data: &[u8],
    given: Option<String>,
) -> Result<(Txid, u64), TemplateError> {
    let problem = |source| TemplateError::Transaction { index, source };
    let parsed: Transaction =
        deserialize(data).map_err(|e| problem(TransactionError::NotATransaction(e)))?;
    let txid = parsed.compute_txid();
    if let Some(given) = given {
        let given = Txid::from_str(&given).map_err(|_| {
            problem(TransactionError::BadTxid {
                given: shown(&given),
            })
        })?;
        if given != txid {
            return Err(problem(TransactionError::WrongTxid {
                given,
                computed: txid,
            }));
        }
    }
    Ok((txid, parsed.weight().to_wu()))
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
    let size = 80 + count_size + coinbase_size as u64 + template.transactions.size() as u64;
    let weight = 4 * (80 + count_size) + coinbase_weight as u64 + template.transactions_weight;
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
    let txids: Vec<[u8; 32]> = template.txids.iter().map(|t| t.to_byte_array()).collect();
    let body = BlockBody {
        height: template.height,
        coinbase,
        transactions: template.transactions.clone(),
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
            (
                "transactions",
                json!([{"data": "zz"}]),
                "transactions[0].data",
            ),
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
            assert!(
                matches!(err, TemplateError::Missing { field } if field == name),
                "{err}"
            );
        }
        // A txid that is not the hash of the data: garbage, refused.
        let mut t = good.clone();
        t["transactions"][0]["txid"] = json!("11".repeat(32));
        let err = BlockTemplate::try_from(&t).unwrap_err();
        assert!(
            matches!(
                &err,
                TemplateError::Transaction {
                    index: 0,
                    source: TransactionError::WrongTxid { .. }
                }
            ),
            "{err}"
        );
        let shown = crate::error_chain::Chain(&err).to_string();
        assert!(shown.contains("not the hash"), "{shown}");
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
