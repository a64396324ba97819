//! One connection of the test pool: the protocol as a pool speaks it, the
//! [`Quirk`]s of pools met in the field, and every share rebuilt from the
//! pool's own record of its job and checked with rust-bitcoin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{BlockHash, CompactTarget, Target, TxMerkleNode};
use serde_json::{json, Value};

use super::{notification, notify_line, Accepted, ConnJobs, Quirk, State, EN2_SIZE};

pub(super) struct Session {
    /// The session id given at subscribe.
    pub(super) sid: Option<String>,
    pub(super) extranonce1: Vec<u8>,
    pub(super) version_mask: u32,
    pub(super) jobs: ConnJobs,
    pub(super) outbox: Sender<String>,
    /// Set to hang up.
    pub(super) closed: Arc<AtomicBool>,
    pub(super) subscribed: bool,
    /// Answers nothing more (`Quirk::HangsOnConfigure`).
    pub(super) hung: bool,
}

impl Session {
    fn reply(&self, id: &Value, result: Value, error: Value) {
        let _ = self
            .outbox
            .send(json!({"id": id, "result": result, "error": error}).to_string());
    }

    /// Notes the pool leaves itself in the outbox, so per-connection state
    /// changes in the order the miner sees the lines.
    pub(super) fn note(&mut self, note: &str, state: &Arc<Mutex<State>>) {
        if let Some(en1) = note.strip_prefix("EN1 ") {
            self.extranonce1 = hex::decode(en1).unwrap();
        } else if let Some(mask) = note.strip_prefix("MASK ") {
            self.version_mask = u32::from_str_radix(mask, 16).unwrap();
        } else if let Some(rest) = note.strip_prefix("JOB ") {
            let (id, difficulty) = rest.split_once(' ').unwrap();
            let s = state.lock().unwrap();
            if let Some(job) = s.jobs.iter().rev().find(|j| j.id == id) {
                self.jobs.sent.insert(
                    id.to_owned(),
                    (
                        self.extranonce1.clone(),
                        difficulty.parse().unwrap(),
                        job.clone(),
                    ),
                );
            }
        }
    }

    pub(super) fn handle(&mut self, request: &Value, state: &Arc<Mutex<State>>) {
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let params = request.get("params").cloned().unwrap_or(json!([]));
        if request.get("method").is_none() {
            state.lock().unwrap().tally.replies.push(request.clone());
            return;
        }
        let method = request.get("method").and_then(Value::as_str).unwrap_or("");
        let quirk = {
            let mut s = state.lock().unwrap();
            s.tally.methods.push(method.to_owned());
            s.quirk
        };
        if self.hung {
            return;
        }
        match (quirk, method) {
            (Quirk::DropsBeforeSubscribe, m) if !self.subscribed && m != "mining.subscribe" => {
                self.closed.store(true, Ordering::SeqCst);
                return;
            }
            (Quirk::HangsOnConfigure, "mining.configure") => {
                self.hung = true;
                return;
            }
            (Quirk::RefusesConfigure, "mining.configure") => {
                self.reply(&id, Value::Null, json!([20, "Method not found", null]));
                return;
            }
            (Quirk::DropsOnSuggestDifficulty, "mining.suggest_difficulty")
            | (Quirk::DropsOnExtranonceSubscribe, "mining.extranonce.subscribe") => {
                self.closed.store(true, Ordering::SeqCst);
                return;
            }
            (Quirk::Latin1OnExtranonceSubscribe, "mining.extranonce.subscribe") => {
                // A greeting in Latin-1 before the answer: bytes that are
                // not UTF-8 while the request is pending.
                let greeting = b"{\"id\":null,\"method\":\"client.show_message\",\"params\":[\"Gr\xfc\xdfe\"]}";
                let _ = self
                    .outbox
                    .send(format!("\u{1}RAW {}", hex::encode(greeting)));
                self.reply(&id, json!(true), Value::Null);
                return;
            }
            (Quirk::ReconnectsOnAuthorize, "mining.authorize") => {
                let _ = self
                    .outbox
                    .send(notification("client.reconnect", json!([])));
                return;
            }
            _ => {}
        }
        match method {
            "mining.configure" => {
                state.lock().unwrap().tally.configures += 1;
                self.version_mask = 0x1fff_e000;
                self.reply(
                    &id,
                    json!({"version-rolling": true, "version-rolling.mask": "1fffe000"}),
                    Value::Null,
                );
            }
            "mining.subscribe" => {
                let mut s = state.lock().unwrap();
                s.tally.subscribes.push(params.clone());
                let resume = params.get(1).and_then(Value::as_str).map(str::to_owned);
                let en1 = match resume.as_ref().and_then(|sid| s.sessions.get(sid)) {
                    Some(en1) => en1.clone(),
                    None => {
                        let en1 = s.next_extranonce.to_be_bytes().to_vec();
                        s.next_extranonce += 1;
                        en1
                    }
                };
                let sid = format!("s{}", hex::encode(&en1));
                s.sessions.insert(sid.clone(), en1.clone());
                if let Some(jobs) = resume.as_ref().and_then(|r| s.session_jobs.get(r)) {
                    self.jobs.sent = jobs.clone();
                }
                self.sid = Some(sid.clone());
                self.subscribed = true;
                self.extranonce1 = en1.clone();
                self.reply(
                    &id,
                    json!([
                        [["mining.set_difficulty", sid], ["mining.notify", sid]],
                        hex::encode(&en1),
                        EN2_SIZE
                    ]),
                    Value::Null,
                );
                let _ = self
                    .outbox
                    .send(notification("mining.set_difficulty", json!([s.difficulty])));
                if !s.silent {
                    if let Some(job) = s.jobs.last().cloned() {
                        self.jobs
                            .sent
                            .insert(job.id.clone(), (en1, s.difficulty, job.clone()));
                        let _ = self.outbox.send(notify_line(&job, true));
                    }
                }
            }
            "mining.authorize" => {
                let user = params
                    .get(0)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let ok = user != "bad-worker";
                state.lock().unwrap().tally.users.push(user);
                self.reply(&id, json!(ok), Value::Null);
            }
            "mining.extranonce.subscribe" => self.reply(&id, json!(true), Value::Null),
            "mining.suggest_difficulty" => {
                if let Some(d) = params.get(0).and_then(Value::as_f64) {
                    state.lock().unwrap().tally.suggested.push(d);
                }
                self.reply(&id, json!(true), Value::Null);
            }
            "mining.submit" => {
                let verdict = self.check_share(&params, state);
                let mut s = state.lock().unwrap();
                s.tally.submits.push(Instant::now());
                if s.mute_submits {
                    match verdict {
                        Ok(accepted) => s.tally.accepted.push(accepted),
                        Err(Stale) => s.tally.stale += 1,
                        Err(Invalid(why)) => s.tally.invalid.push(why),
                    }
                    return;
                }
                match verdict {
                    Ok(accepted) if s.reject_all => {
                        let _ = accepted;
                        s.tally.rejected += 1;
                        self.reply(&id, json!(false), json!([23, "Low difficulty share", null]));
                    }
                    Ok(accepted) => {
                        s.tally.accepted.push(accepted);
                        self.reply(&id, json!(true), Value::Null);
                    }
                    Err(Stale) => {
                        s.tally.stale += 1;
                        self.reply(&id, Value::Null, json!([21, "Job not found", null]));
                    }
                    Err(Invalid(why)) => {
                        s.tally.invalid.push(why);
                        self.reply(&id, json!(false), json!([20, "Invalid share", null]));
                    }
                }
            }
            _ => self.reply(&id, Value::Null, json!([20, "Unknown method", null])),
        }
    }

    /// Rebuilds the header from this connection's record of the job, with
    /// rust-bitcoin, and checks its proof of work.
    fn check_share(&self, params: &Value, state: &Arc<Mutex<State>>) -> Result<Accepted, Verdict> {
        let text = |i: usize| params.get(i).and_then(Value::as_str).unwrap_or("");
        let job_id = text(1);
        let Some((en1, difficulty, job)) = self.jobs.sent.get(job_id).cloned() else {
            return Err(Stale);
        };
        if !state
            .lock()
            .unwrap()
            .jobs
            .iter()
            .any(|j| j.id == job.id && j.prev_hash == job.prev_hash)
        {
            return Err(Stale);
        }
        let en2 = hex::decode(text(2)).map_err(|_| Invalid("extranonce2 not hex".into()))?;
        if en2.len() != EN2_SIZE {
            return Err(Invalid(format!("extranonce2 of {} bytes", en2.len())));
        }
        let word = |i: usize| {
            u32::from_str_radix(text(i), 16).map_err(|_| Invalid(format!("param {i} not hex")))
        };
        let (time, nonce) = (word(3)?, word(4)?);
        let version_bits = match params.get(5) {
            Some(_) => Some(word(5)?),
            None => None,
        };
        let mut version = job.version;
        if let Some(bits) = version_bits {
            if bits & !self.version_mask != 0 {
                return Err(Invalid(format!(
                    "version bits {bits:08x} outside mask {:08x}",
                    self.version_mask
                )));
            }
            version = (version & !self.version_mask) | bits;
        }
        if time < job.time || time > job.time + 7200 {
            return Err(Invalid(format!("ntime {time:08x} out of range")));
        }
        let extranonce = [en1.as_slice(), &en2].concat();
        let root = merkle_root(&job.coinbase1, &extranonce, &job.coinbase2, &job.branch);
        let header = Header {
            version: Version::from_consensus(version as i32),
            prev_blockhash: BlockHash::from_byte_array(job.prev_hash),
            merkle_root: TxMerkleNode::from_byte_array(root),
            time,
            bits: CompactTarget::from_consensus(job.bits),
            nonce,
        };
        let hash = header.block_hash();
        let is_block = header.target().is_met_by(hash);
        let share_difficulty = hash_difficulty(&hash);
        if share_difficulty < difficulty && !is_block {
            return Err(Invalid(format!(
                "difficulty {share_difficulty} below the job's {difficulty}"
            )));
        }
        let bytes: [u8; 80] = bitcoin::consensus::serialize(&header).try_into().unwrap();
        if !state.lock().unwrap().seen.insert(bytes) {
            return Err(Invalid("duplicate share".into()));
        }
        Ok(Accepted {
            job_id: job_id.to_owned(),
            at: Instant::now(),
            header,
            difficulty: share_difficulty,
            version_bits,
            is_block,
        })
    }
}

/// A Stratum job's merkle root for one extranonce (extranonce1 then
/// extranonce2), computed here with rust-bitcoin's sha256d: the coinbase's
/// txid folded up the job's branch.
pub(crate) fn merkle_root(
    coinbase1: &[u8],
    extranonce: &[u8],
    coinbase2: &[u8],
    branch: &[impl AsRef<[u8]>],
) -> [u8; 32] {
    let coinbase = [coinbase1, extranonce, coinbase2].concat();
    let mut root = *sha256d::Hash::hash(&coinbase).as_byte_array();
    for step in branch {
        root = *sha256d::Hash::hash(&[root.as_slice(), step.as_ref()].concat()).as_byte_array();
    }
    root
}

enum Verdict {
    Stale,
    Invalid(String),
}
use Verdict::{Invalid, Stale};

/// Difficulty of a hash, computed here independently: diff-1 target over
/// the hash as a number.
pub fn hash_difficulty(hash: &BlockHash) -> f64 {
    let bytes = hash.to_byte_array();
    let mut value = 0f64;
    for b in bytes.iter().rev() {
        value = value * 256.0 + f64::from(*b);
    }
    let diff1 = Target::MAX_ATTAINABLE_MAINNET.to_be_bytes();
    let mut one = 0f64;
    for b in diff1 {
        one = one * 256.0 + f64::from(b);
    }
    one / value.max(1.0)
}
