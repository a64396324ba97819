//! Stratum V1 messages, one type per method, parsed once at the edge with
//! `TryFrom` so the rest of the miner never touches raw JSON. Everything
//! from a pool is untrusted: every field is checked for type, length and
//! range, and a bad one is an error naming the field and the value.

use std::sync::Arc;

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Target};
use serde_json::Value;

use crate::job::{Job, Origin};

/// Most merkle branches a notify may carry: 2^32 transactions need 32.
pub const MAX_MERKLE_BRANCHES: usize = 32;
/// Longest coinbase part accepted, in bytes (a block's coinbase is bounded
/// by consensus at far less than a block; 100 kB is generous).
pub const MAX_COINBASE_PART: usize = 100_000;
/// Longest job id or free-text field kept.
const MAX_TEXT: usize = 256;

/// A message from a pool that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StratumError {
    /// A message with the wrong number of parameters.
    #[error("{method}: expected {expected} parameters, got {got}")]
    ParamCount {
        /// The JSON-RPC method.
        method: &'static str,
        /// What it must be.
        expected: &'static str,
        /// How many it had.
        got: usize,
    },
    /// A parameter of the wrong form.
    #[error("{method}: {field} is not {expected}: {value}")]
    BadField {
        /// The JSON-RPC method.
        method: &'static str,
        /// The parameter.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is (its first characters).
        value: String,
    },
    /// A line that is not a JSON-RPC message (its first characters).
    #[error("not a JSON-RPC message: {0}")]
    NotJsonRpc(String),
}

/// Shortens untrusted text for error messages.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 80 {
        format!(
            "{}…",
            &text[..text.char_indices().nth(80).map_or(text.len(), |(i, _)| i)]
        )
    } else {
        text
    }
}

struct Fields<'a> {
    method: &'static str,
    params: &'a [Value],
}

impl<'a> Fields<'a> {
    fn new(
        method: &'static str,
        params: &'a Value,
        min: usize,
        max: usize,
        expected: &'static str,
    ) -> Result<Self, StratumError> {
        let params = params.as_array().map(Vec::as_slice).unwrap_or(&[]);
        if params.len() < min || params.len() > max {
            return Err(StratumError::ParamCount {
                method,
                expected,
                got: params.len(),
            });
        }
        Ok(Fields { method, params })
    }

    fn bad(&self, field: &'static str, expected: &'static str, value: &Value) -> StratumError {
        StratumError::BadField {
            method: self.method,
            field,
            expected,
            value: shown(value),
        }
    }

    fn get(&self, index: usize) -> &'a Value {
        self.params.get(index).unwrap_or(&Value::Null)
    }

    fn text(&self, index: usize, field: &'static str) -> Result<String, StratumError> {
        let value = self.get(index);
        match value.as_str() {
            Some(s) if s.len() <= MAX_TEXT => Ok(s.to_owned()),
            _ => Err(self.bad(field, "a short string", value)),
        }
    }

    /// Hex of any length up to `max` bytes.
    fn hex(&self, index: usize, field: &'static str, max: usize) -> Result<Vec<u8>, StratumError> {
        let value = self.get(index);
        value
            .as_str()
            .filter(|s| s.len() <= 2 * max)
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| self.bad(field, "hexadecimal", value))
    }

    fn hex_array<const N: usize>(
        &self,
        value: &Value,
        field: &'static str,
    ) -> Result<[u8; N], StratumError> {
        value
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                self.bad(
                    field,
                    if N == 4 {
                        "8 hex digits"
                    } else {
                        "64 hex digits"
                    },
                    value,
                )
            })
    }

    /// A 32-bit value sent as 8 hex digits, most significant first.
    fn hex_u32(&self, index: usize, field: &'static str) -> Result<u32, StratumError> {
        Ok(u32::from_be_bytes(
            self.hex_array::<4>(self.get(index), field)?,
        ))
    }

    fn boolean(&self, index: usize, field: &'static str) -> Result<bool, StratumError> {
        let value = self.get(index);
        value
            .as_bool()
            .ok_or_else(|| self.bad(field, "true or false", value))
    }
}

/// `mining.notify`: a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub(crate) job_id: String,
    /// The previous block hash, in header byte order (Stratum sends it as
    /// eight 4-byte words, each byte-reversed).
    pub prev_hash: BlockHash,
    /// The coinbase transaction before the extranonce.
    pub coinbase1: Vec<u8>,
    /// The coinbase transaction after the extranonce.
    pub coinbase2: Vec<u8>,
    /// The merkle branch from the coinbase to the root.
    pub merkle_branch: Vec<[u8; 32]>,
    /// The block version.
    pub version: u32,
    /// The network target's compact form.
    pub bits: CompactTarget,
    /// The block time (`ntime`).
    pub time: u32,
    pub(crate) clean: bool,
}

impl TryFrom<&Value> for Notify {
    type Error = StratumError;

    fn try_from(params: &Value) -> Result<Self, StratumError> {
        let f = Fields::new("mining.notify", params, 9, 9, "9")?;
        let prev: [u8; 32] = f.hex_array(f.get(1), "prevhash")?;
        let mut header_order = [0u8; 32];
        for (out, word) in header_order.chunks_exact_mut(4).zip(prev.chunks_exact(4)) {
            out.copy_from_slice(&[word[3], word[2], word[1], word[0]]);
        }
        let branches = f.get(4);
        let list = branches
            .as_array()
            .filter(|l| l.len() <= MAX_MERKLE_BRANCHES)
            .ok_or_else(|| f.bad("merkle_branch", "a list of at most 32 hashes", branches))?;
        let merkle_branch = list
            .iter()
            .map(|b| f.hex_array::<32>(b, "merkle_branch"))
            .collect::<Result<_, _>>()?;
        Ok(Notify {
            job_id: f.text(0, "job_id")?,
            prev_hash: BlockHash::from_byte_array(header_order),
            coinbase1: f.hex(2, "coinb1", MAX_COINBASE_PART)?,
            coinbase2: f.hex(3, "coinb2", MAX_COINBASE_PART)?,
            merkle_branch,
            version: f.hex_u32(5, "version")?,
            bits: CompactTarget::from_consensus(f.hex_u32(6, "nbits")?),
            time: f.hex_u32(7, "ntime")?,
            clean: f.boolean(8, "clean_jobs")?,
        })
    }
}

/// What the miner adds to a notify to make a [`Job`]: its session's
/// extranonce1, the difficulty in force when the job arrived, and the
/// negotiated version-rolling mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The pool's part of the extranonce.
    pub extranonce1: Vec<u8>,
    /// How many extranonce bytes the miner rolls.
    pub extranonce2_size: usize,
    /// The share target now in force.
    pub share_target: Target,
    /// The version bits the pool lets the miner roll (BIP 310); 0 for none.
    pub version_mask: u32,
    /// The pool, as jobs name where they came from.
    pub origin: Origin,
}

impl Notify {
    /// The job to mine. The share target is the session's at the time the
    /// notify arrived: a later `mining.set_difficulty` applies to later jobs.
    pub fn to_job(&self, session: &Session) -> Job {
        Job {
            id: self.job_id.clone(),
            generation: 0,
            version: self.version as i32,
            version_mask: session.version_mask,
            prev_hash: self.prev_hash,
            coinbase1: self.coinbase1.clone(),
            coinbase2: self.coinbase2.clone(),
            extranonce1: session.extranonce1.clone(),
            extranonce2_size: session.extranonce2_size,
            merkle_branch: self.merkle_branch.clone(),
            bits: self.bits,
            time: self.time,
            // Pools accept ntime up to about two hours ahead; roll far less.
            max_time_roll: 600,
            clean: self.clean,
            share_target: session.share_target,
            origin: session.origin.clone(),
            block_body: None,
            merkle_root: None,
        }
    }
}

/// The result of `mining.subscribe`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeResult {
    /// The session id to resume with on reconnect, if the pool gave one.
    pub session_id: Option<String>,
    /// The pool's part of the extranonce.
    pub extranonce1: Vec<u8>,
    pub(crate) extranonce2_size: usize,
}

/// extranonce2 sizes a miner can fill: 1 to 8 bytes (0 leaves only ntime
/// and version bits to roll, which a pool never means).
fn extranonce2_size(f: &Fields<'_>, index: usize) -> Result<usize, StratumError> {
    let value = f.get(index);
    value
        .as_u64()
        .filter(|n| (1..=8).contains(n))
        .map(|n| n as usize)
        .ok_or_else(|| f.bad("extranonce2_size", "an integer from 1 to 8", value))
}

impl TryFrom<&Value> for SubscribeResult {
    type Error = StratumError;

    fn try_from(result: &Value) -> Result<Self, StratumError> {
        let f = Fields::new("mining.subscribe", result, 3, 3, "3 result")?;
        // [[["mining.set_difficulty", id], ["mining.notify", id]], en1, en2_size]
        let session_id = f
            .get(0)
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .find(|pair| pair.first().and_then(Value::as_str) == Some("mining.notify"))
            .and_then(|pair| pair.get(1))
            .and_then(Value::as_str)
            .filter(|s| s.len() <= MAX_TEXT)
            .map(str::to_owned);
        Ok(SubscribeResult {
            session_id,
            extranonce1: f.hex(1, "extranonce1", 32)?,
            extranonce2_size: extranonce2_size(&f, 2)?,
        })
    }
}

/// A request or notification from the pool, typed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerMessage {
    /// `mining.notify`: a new job.
    Notify(Arc<Notify>),
    /// `mining.set_difficulty`: applies to jobs notified after it.
    SetDifficulty(f64),
    /// `mining.set_extranonce`.
    SetExtranonce {
        /// The pool's new part of the extranonce.
        extranonce1: Vec<u8>,
        /// How many extranonce bytes the miner rolls now.
        extranonce2_size: usize,
    },
    /// BIP 310 `mining.set_version_mask`.
    SetVersionMask(u32),
    /// `client.reconnect`.
    Reconnect {
        /// Where to connect instead (none: the same pool).
        host: Option<String>,
        /// Its port (none: the same).
        port: Option<u16>,
        /// How long to wait first, in seconds.
        wait_s: u64,
    },
    /// `client.show_message`.
    ShowMessage(String),
    /// `client.get_version`.
    GetVersion {
        /// The request id to answer.
        id: Value,
    },
    /// A method this miner does not handle: logged, ignored.
    Unknown(String),
}

impl TryFrom<&Value> for ServerMessage {
    type Error = StratumError;

    fn try_from(message: &Value) -> Result<Self, StratumError> {
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| StratumError::NotJsonRpc(shown(message)))?;
        let params = message.get("params").unwrap_or(&Value::Null);
        Ok(match method {
            "mining.notify" => ServerMessage::Notify(Arc::new(Notify::try_from(params)?)),
            "mining.set_difficulty" => {
                let f = Fields::new("mining.set_difficulty", params, 1, 1, "1")?;
                let value = f.get(0);
                let difficulty = value
                    .as_f64()
                    .filter(|d| d.is_finite() && *d > 0.0)
                    .ok_or_else(|| f.bad("difficulty", "a positive number", value))?;
                ServerMessage::SetDifficulty(difficulty)
            }
            "mining.set_extranonce" => {
                let f = Fields::new("mining.set_extranonce", params, 2, 2, "2")?;
                ServerMessage::SetExtranonce {
                    extranonce1: f.hex(0, "extranonce1", 32)?,
                    extranonce2_size: extranonce2_size(&f, 1)?,
                }
            }
            "mining.set_version_mask" => {
                let f = Fields::new("mining.set_version_mask", params, 1, 1, "1")?;
                ServerMessage::SetVersionMask(f.hex_u32(0, "version_mask")?)
            }
            "client.reconnect" => {
                let f = Fields::new("client.reconnect", params, 0, 3, "0 to 3")?;
                let host = match f.get(0) {
                    Value::Null => None,
                    _ => Some(f.text(0, "host")?),
                };
                let port = match f.get(1) {
                    Value::Null => None,
                    v => Some(
                        v.as_u64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                            .and_then(|p| u16::try_from(p).ok())
                            .filter(|p| *p > 0)
                            .ok_or_else(|| f.bad("port", "a port number", v))?,
                    ),
                };
                let wait_s = f.get(2).as_u64().unwrap_or(0).min(3600);
                ServerMessage::Reconnect { host, port, wait_s }
            }
            "client.show_message" => {
                let f = Fields::new("client.show_message", params, 1, 1, "1")?;
                let value = f.get(0);
                let text = value
                    .as_str()
                    .ok_or_else(|| f.bad("message", "a string", value))?;
                ServerMessage::ShowMessage(text.chars().take(1000).collect())
            }
            "client.get_version" => ServerMessage::GetVersion {
                id: message.get("id").cloned().unwrap_or(Value::Null),
            },
            other => ServerMessage::Unknown(other.chars().take(MAX_TEXT).collect()),
        })
    }
}

/// The parameters of `mining.submit`, as hex strings in Stratum's order:
/// worker, job id, extranonce2, ntime, nonce, and (BIP 310) the rolled
/// version bits when version rolling is on.
pub fn submit_params(
    worker: &str,
    job: &Job,
    extranonce2: &[u8],
    time: u32,
    nonce: u32,
    version: i32,
) -> Value {
    let mut params = vec![
        Value::from(worker),
        Value::from(job.id.as_str()),
        Value::from(hex::encode(extranonce2)),
        Value::from(format!("{time:08x}")),
        Value::from(format!("{nonce:08x}")),
    ];
    if job.version_mask != 0 {
        let rolled = (version as u32 ^ job.version as u32) & job.version_mask;
        params.push(Value::from(format!("{rolled:08x}")));
    }
    Value::Array(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pow::target::share_target;
    use crate::work::Work;
    use serde_json::json;

    /// The worked example of slush's Stratum documentation, end to end:
    /// notify + extranonce1 + extranonce2 -> header -> hash.
    #[test]
    fn slush_example_builds_the_documented_header() {
        let notify = json!({"id": null, "method": "mining.notify", "params": ["bf","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008","072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],"00000002","1c2ac4af","504e86b9",false]});
        let ServerMessage::Notify(notify) = ServerMessage::try_from(&notify).unwrap() else {
            panic!("not a notify");
        };
        let session = Session {
            extranonce1: hex::decode("08000002").unwrap(),
            extranonce2_size: 4,
            share_target: share_target(1.0).unwrap(),
            version_mask: 0,
            origin: Origin::new(crate::job::SourceKind::Pool, 0, "stratum+tcp://pool:3333"),
        };
        let job = Arc::new(notify.to_job(&session));
        // submit ["slush.miner1","bf","00000001","504e86ed","b2957c02"]
        let work = Work::new(
            job.clone(),
            hex::decode("00000001").unwrap(),
            job.version,
            0x504e86ed,
        );
        let header = crate::pow::header::with_nonce(&work.header, 0xb2957c02);
        assert_eq!(
            hex::encode(bitcoin::consensus::serialize(&header)),
            "02000000f8b6164d19e2f65a2aae448f787fe66d61e57a48c0c6771b1e920b440000000032414daa9ddac879fd2c62839b9ba710a3546363a5f5e22915d90dc3b1699deced864e50afc42a1c027c95b2"
        );
        assert_eq!(
            header.block_hash().to_string(),
            "000000002076870fe65a2b6eeed84fa892c0db924f1482243a6247d931dcab32"
        );
        assert_eq!(
            submit_params(
                "slush.miner1",
                &job,
                &work.extranonce2,
                work.time,
                0xb2957c02,
                work.version
            ),
            json!(["slush.miner1", "bf", "00000001", "504e86ed", "b2957c02"])
        );
    }

    #[test]
    fn bad_notifies_are_errors_naming_the_field() {
        let good = json!([
            "bf",
            "00".repeat(32),
            "01",
            "02",
            [],
            "00000002",
            "1c2ac4af",
            "504e86b9",
            true
        ]);
        assert!(Notify::try_from(&good).is_ok());
        let cases = [
            (1, json!("00".repeat(31)), "prevhash"),
            (2, json!("zz"), "coinb1"),
            (3, json!("0".repeat(2 * MAX_COINBASE_PART + 2)), "coinb2"),
            (4, json!(vec!["00".repeat(32); 10_000]), "merkle_branch"),
            (4, json!(["00"]), "merkle_branch"),
            (5, json!(2), "version"),
            (6, json!("1c2ac4"), "nbits"),
            (7, json!(null), "ntime"),
            (8, json!("yes"), "clean_jobs"),
        ];
        for (index, value, field) in cases {
            let mut params = good.clone();
            params[index] = value;
            let error = Notify::try_from(&params).unwrap_err().to_string();
            assert!(error.contains(field), "{error}");
        }
        assert!(matches!(
            Notify::try_from(&json!(["bf"])),
            Err(StratumError::ParamCount { .. })
        ));
        assert!(Notify::try_from(&json!("not a list")).is_err());
    }

    #[test]
    fn other_messages_parse_and_validate() {
        let parse = |v: Value| ServerMessage::try_from(&v);
        assert_eq!(
            parse(json!({"method": "mining.set_difficulty", "params": [0.5]})).unwrap(),
            ServerMessage::SetDifficulty(0.5)
        );
        for bad in [json!([0]), json!([-1]), json!(["8"]), json!([])] {
            assert!(parse(json!({"method": "mining.set_difficulty", "params": bad})).is_err());
        }
        assert_eq!(
            parse(json!({"method": "mining.set_extranonce", "params": ["abcd", 4]})).unwrap(),
            ServerMessage::SetExtranonce {
                extranonce1: vec![0xab, 0xcd],
                extranonce2_size: 4
            }
        );
        assert!(
            parse(json!({"method": "mining.set_extranonce", "params": ["abcd", 4096]})).is_err()
        );
        assert_eq!(
            parse(json!({"method": "mining.set_version_mask", "params": ["1fffe000"]})).unwrap(),
            ServerMessage::SetVersionMask(0x1fffe000)
        );
        assert_eq!(
            parse(json!({"method": "client.reconnect", "params": ["pool.example", "3334", 5]}))
                .unwrap(),
            ServerMessage::Reconnect {
                host: Some("pool.example".into()),
                port: Some(3334),
                wait_s: 5
            }
        );
        assert!(parse(json!({"method": "client.reconnect", "params": ["h", 70000]})).is_err());
        assert!(matches!(
            parse(json!({"method": "x.y", "params": []})).unwrap(),
            ServerMessage::Unknown(_)
        ));
        assert!(parse(json!({"result": true})).is_err());
        assert!(parse(json!([1, 2])).is_err());
    }

    #[test]
    fn subscribe_result_keeps_the_session_id() {
        let result = json!([
            [
                ["mining.set_difficulty", "b4b6693b72a50c7116db18d6497cac52"],
                ["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]
            ],
            "08000002",
            4
        ]);
        let parsed = SubscribeResult::try_from(&result).unwrap();
        assert_eq!(
            parsed.session_id.as_deref(),
            Some("ae6812eb4cd7735a302a8a9dd95cf71f")
        );
        assert_eq!(parsed.extranonce1, vec![8, 0, 0, 2]);
        assert_eq!(parsed.extranonce2_size, 4);
        assert!(SubscribeResult::try_from(&json!([[], "08000002", 0])).is_err());
        assert!(SubscribeResult::try_from(&json!([[], "08000002", 100])).is_err());
        assert!(SubscribeResult::try_from(&json!([[], "0g", 4])).is_err());
    }

    #[test]
    fn submit_carries_rolled_version_bits() {
        let mut job = crate::job::synthetic::synthetic_job();
        job.version_mask = 0x1fffe000;
        job.id = "j1".into();
        let params = submit_params(
            "w",
            &job,
            &[0, 1],
            0x5000_0000,
            7,
            job.version | 0x0000_6000,
        );
        assert_eq!(params[5], json!("00006000"));
    }
}
