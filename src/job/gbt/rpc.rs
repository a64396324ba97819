//! A node's JSON-RPC over HTTP, blocking (ureq): user and password, or the
//! node's cookie file, re-read on every call because the node writes a new
//! one each time it starts. Every answer is bounded and checked.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

/// The largest answer read from a node (a full mainnet template is a few MB).
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// How to authenticate to the node.
#[derive(Debug, Clone)]
pub enum RpcAuth {
    None,
    UserPass {
        user: String,
        password: String,
    },
    /// The node's `.cookie` file (`__cookie__:PASSWORD`).
    Cookie(PathBuf),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("node {url}: cannot connect: {message}")]
    Connect { url: String, message: String },
    #[error("node {url}: wrong RPC user/password or cookie (HTTP 401)")]
    Unauthorized { url: String },
    #[error("node {url}: HTTP {status} to {method}: {body}")]
    Http {
        url: String,
        method: String,
        status: u16,
        body: String,
    },
    #[error("node {url}: answer to {method} is not JSON-RPC: {snippet}")]
    NotJson {
        url: String,
        method: String,
        snippet: String,
    },
    #[error("node: {method} failed: {message} (code {code})")]
    Rpc {
        method: String,
        code: i64,
        message: String,
    },
    #[error("cookie file {path}: {message}")]
    Cookie { path: String, message: String },
}

impl NodeError {
    /// Whether the node may answer differently later (down, restarting,
    /// still syncing) rather than having refused for good.
    pub fn is_transient(&self) -> bool {
        match self {
            NodeError::Connect { .. } | NodeError::Cookie { .. } => true,
            NodeError::Http { status, .. } => *status >= 500,
            // -9 not connected, -10 in initial block download, -28 warming up.
            NodeError::Rpc { code, .. } => matches!(code, -9 | -10 | -28),
            _ => false,
        }
    }
}

/// A node's RPC endpoint.
#[derive(Debug, Clone)]
pub struct NodeRpc {
    pub url: String,
    auth: RpcAuth,
    agent: ureq::Agent,
}

impl NodeRpc {
    /// `timeout` bounds every call but long polls.
    pub fn new(url: &str, auth: RpcAuth, timeout: Duration) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .build();
        NodeRpc {
            url: url.to_owned(),
            auth,
            agent,
        }
    }

    /// The same endpoint with a longer read timeout, for long polls.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self::new(&self.url, self.auth.clone(), timeout)
    }

    fn authorization(&self) -> Result<Option<String>, NodeError> {
        let pair = match &self.auth {
            RpcAuth::None => return Ok(None),
            RpcAuth::UserPass { user, password } => format!("{user}:{password}"),
            RpcAuth::Cookie(path) => {
                let cookie_error = |message: String| NodeError::Cookie {
                    path: path.display().to_string(),
                    message,
                };
                let text =
                    // A cookie is one short line; a FIFO or a huge file is not one.
                    crate::files::read_text(path, 4096).map_err(|e| cookie_error(e.to_string()))?;
                let text = text.trim();
                if !text.contains(':') || text.len() > 1024 {
                    return Err(cookie_error("not USER:PASSWORD".into()));
                }
                text.to_owned()
            }
        };
        Ok(Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )))
    }

    /// Calls `method` and returns its `result`.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, NodeError> {
        let body = json!({"jsonrpc": "1.0", "id": "hashrig", "method": method, "params": params});
        let mut request = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json");
        if let Some(auth) = self.authorization()? {
            request = request.set("Authorization", &auth);
        }
        let (status, text) = match request.send_string(&body.to_string()) {
            Ok(response) => (response.status(), read_body(response)),
            Err(ureq::Error::Status(401, _)) => {
                return Err(NodeError::Unauthorized {
                    url: self.url.clone(),
                });
            }
            // Nodes answer RPC errors with HTTP 404/500 and a JSON body.
            Err(ureq::Error::Status(status, response)) => (status, read_body(response)),
            Err(ureq::Error::Transport(t)) => {
                return Err(NodeError::Connect {
                    url: self.url.clone(),
                    message: t.to_string(),
                });
            }
        };
        let snippet = || text.chars().take(120).collect::<String>();
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) if status >= 400 => {
                return Err(NodeError::Http {
                    url: self.url.clone(),
                    method: method.to_owned(),
                    status,
                    body: snippet(),
                });
            }
            Err(_) => {
                return Err(NodeError::NotJson {
                    url: self.url.clone(),
                    method: method.to_owned(),
                    snippet: snippet(),
                });
            }
        };
        match value.get("error") {
            Some(Value::Null) | None => {}
            Some(error) => {
                return Err(NodeError::Rpc {
                    method: method.to_owned(),
                    code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .chars()
                        .take(200)
                        .collect(),
                });
            }
        }
        match value.get("result") {
            Some(result) => Ok(result.clone()),
            None if status >= 400 => Err(NodeError::Http {
                url: self.url.clone(),
                method: method.to_owned(),
                status,
                body: snippet(),
            }),
            None => Err(NodeError::NotJson {
                url: self.url.clone(),
                method: method.to_owned(),
                snippet: snippet(),
            }),
        }
    }
}

fn read_body(response: ureq::Response) -> String {
    let mut text = String::new();
    let _ = response
        .into_reader()
        .take(MAX_BODY)
        .read_to_string(&mut text);
    text
}
