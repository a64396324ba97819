//! The miner's side of the conversation: requests it sends, and the typed
//! replies to them. A line from a pool is either a reply (it has an `id`
//! and a `result` or `error`) or a [`ServerMessage`] (it has a `method`).

use serde_json::{json, Value};

use super::messages::{ServerMessage, StratumError};

/// The mask asked for in `mining.configure`: the 16 bits BIP 310 and
/// BIP 320 leave to miners.
pub const VERSION_ROLLING_MASK: u32 = 0x1fff_e000;

/// One JSON-RPC request as a line (without the newline).
pub fn request_line(id: u64, method: &str, params: Value) -> String {
    json!({ "id": id, "method": method, "params": params }).to_string()
}

/// `mining.configure` asking for BIP 310 version rolling.
pub fn configure_params() -> Value {
    json!([
        ["version-rolling"],
        {
            "version-rolling.mask": format!("{VERSION_ROLLING_MASK:08x}"),
            "version-rolling.min-bit-count": 2
        }
    ])
}

/// `mining.subscribe`, with the previous session id to resume extranonce1.
pub fn subscribe_params(agent: &str, session_id: Option<&str>) -> Value {
    match session_id {
        Some(id) => json!([agent, id]),
        None => json!([agent]),
    }
}

/// A JSON-RPC error as pools send it: `[code, "message", traceback]`, an
/// object with `code` and `message`, or a bare string.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
}

impl RpcError {
    fn from_value(value: &Value) -> Option<RpcError> {
        let text = |v: Option<&Value>| -> String {
            v.map(|v| match v.as_str() {
                Some(s) => s.chars().take(200).collect(),
                None => v.to_string().chars().take(200).collect(),
            })
            .unwrap_or_default()
        };
        match value {
            Value::Null => None,
            Value::Array(parts) => Some(RpcError {
                code: parts.first().and_then(Value::as_i64).unwrap_or(0),
                message: text(parts.get(1)),
            }),
            Value::Object(map) => Some(RpcError {
                code: map.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: text(map.get("message")),
            }),
            other => Some(RpcError {
                code: 0,
                message: text(Some(other)),
            }),
        }
    }

    /// Stratum's error 21, "job not found", and pools that spell it out:
    /// the share came too late, which is stale, not wrong.
    pub fn is_stale(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        self.code == 21 || m.contains("stale") || m.contains("job not found")
    }
}

/// A reply to one of the miner's requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub(crate) id: u64,
    pub(crate) result: Value,
    pub(crate) error: Option<RpcError>,
}

impl Reply {
    /// `true` result and no error: the usual "yes" of authorize and submit.
    pub fn is_true(&self) -> bool {
        self.error.is_none() && self.result == Value::Bool(true)
    }

    /// Why the pool said no, for logs and rejected-share reasons.
    pub fn reason(&self) -> String {
        match &self.error {
            Some(e) if e.code != 0 => format!("{} (code {})", e.message, e.code),
            Some(e) => e.message.clone(),
            None => format!("result {}", self.result),
        }
    }
}

/// Any line a pool sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// An answer to a request of ours.
    Reply(Reply),
    /// A request or notification from the pool.
    Message(ServerMessage),
    /// A reply whose id is not one of ours (pools echo null ids on errors):
    /// logged and ignored.
    Unmatched(String),
}

impl TryFrom<&Value> for Incoming {
    type Error = StratumError;

    fn try_from(value: &Value) -> Result<Self, StratumError> {
        if value.get("method").is_some() {
            return ServerMessage::try_from(value).map(Incoming::Message);
        }
        let Some(object) = value.as_object() else {
            return Err(StratumError::NotJsonRpc(
                value.to_string().chars().take(80).collect(),
            ));
        };
        if !object.contains_key("result") && !object.contains_key("error") {
            return Err(StratumError::NotJsonRpc(
                value.to_string().chars().take(80).collect(),
            ));
        }
        let error = object.get("error").and_then(RpcError::from_value);
        match object.get("id").and_then(Value::as_u64) {
            Some(id) => Ok(Incoming::Reply(Reply {
                id,
                result: object.get("result").cloned().unwrap_or(Value::Null),
                error,
            })),
            None => Ok(Incoming::Unmatched(
                error.map(|e| e.message).unwrap_or_default(),
            )),
        }
    }
}

/// The version-rolling mask a pool granted in its `mining.configure`
/// reply, kept within what was asked for; `None` when it refused.
pub fn granted_version_mask(reply: &Reply) -> Option<u32> {
    if reply.error.is_some() || reply.result.get("version-rolling") != Some(&Value::Bool(true)) {
        return None;
    }
    let mask = reply
        .result
        .get("version-rolling.mask")
        .and_then(Value::as_str)
        .filter(|s| s.len() == 8)
        .and_then(|s| u32::from_str_radix(s, 16).ok())?;
    Some(mask & VERSION_ROLLING_MASK).filter(|m| *m != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(v: Value) -> Incoming {
        Incoming::try_from(&v).unwrap()
    }

    #[test]
    fn replies_and_errors_in_every_shape() {
        let Incoming::Reply(ok) = incoming(json!({"id": 4, "result": true, "error": null})) else {
            panic!()
        };
        assert!(ok.is_true());
        let Incoming::Reply(stale) =
            incoming(json!({"id": 5, "result": null, "error": [21, "Job not found", null]}))
        else {
            panic!()
        };
        assert!(stale.error.as_ref().unwrap().is_stale());
        assert_eq!(stale.reason(), "Job not found (code 21)");
        let Incoming::Reply(low) = incoming(
            json!({"id": 6, "result": false, "error": {"code": 23, "message": "Low difficulty"}}),
        ) else {
            panic!()
        };
        assert!(!low.is_true());
        assert!(!low.error.unwrap().is_stale());
        assert!(matches!(
            incoming(json!({"id": null, "result": null, "error": "bad"})),
            Incoming::Unmatched(_)
        ));
        assert!(matches!(
            incoming(json!({"id": null, "method": "mining.set_difficulty", "params": [2]})),
            Incoming::Message(ServerMessage::SetDifficulty(_))
        ));
        assert!(Incoming::try_from(&json!({"id": 1})).is_err());
        assert!(Incoming::try_from(&json!("text")).is_err());
    }

    #[test]
    fn version_mask_is_limited_to_what_was_asked() {
        let reply = |result: Value| Reply {
            id: 1,
            result,
            error: None,
        };
        assert_eq!(
            granted_version_mask(&reply(
                json!({"version-rolling": true, "version-rolling.mask": "ffffffff"})
            )),
            Some(VERSION_ROLLING_MASK)
        );
        assert_eq!(
            granted_version_mask(&reply(
                json!({"version-rolling": true, "version-rolling.mask": "00006000"})
            )),
            Some(0x6000)
        );
        assert_eq!(
            granted_version_mask(&reply(json!({"version-rolling": false}))),
            None
        );
        assert_eq!(
            granted_version_mask(&reply(
                json!({"version-rolling": true, "version-rolling.mask": "xyz"})
            )),
            None
        );
    }
}
