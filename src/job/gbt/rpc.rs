//! A node's JSON-RPC over HTTP, blocking (ureq): user and password, or the
//! node's cookie file, re-read on every call because the node writes a new
//! one each time it starts. Every answer is bounded, and parsed into the
//! caller's type as it streams in ([`super::answer`]).

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::answer::{self, AnswerError};

/// The most read of one answer: a cap, not a budget (the parse holds only
/// what the caller's type keeps). A mainnet template is 2–8 MB (4 MB of
/// block weight at most, hex-encoded, with per-transaction fields); 64 MiB
/// leaves room for big-block chains and is still far from what memory can
/// take.
pub const MAX_BODY: u64 = 64 * 1024 * 1024;
/// How much of an answer that is not JSON is shown in the error.
const SNIPPET: usize = 120;

/// How to authenticate to the node.
#[derive(Debug, Clone)]
pub enum RpcAuth {
    /// No authentication.
    None,
    /// `rpcuser` and `rpcpassword`.
    UserPass {
        /// The RPC user.
        user: String,
        /// Its password.
        password: String,
    },
    /// The node's `.cookie` file (`__cookie__:PASSWORD`).
    Cookie(PathBuf),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No connection, or it broke.
    #[error("node {url}: cannot connect")]
    Connect {
        /// The node's RPC URL.
        url: String,
        /// What failed underneath.
        #[source]
        source: Box<ureq::Transport>,
    },
    /// The request could not be serialized.
    #[error("node {url}: the {method} request could not be written")]
    Request {
        /// The node's RPC URL.
        url: String,
        /// The RPC method called.
        method: String,
        /// What failed underneath.
        #[source]
        source: serde_json::Error,
    },
    /// HTTP 401: wrong credentials.
    #[error("node {url}: wrong RPC user/password or cookie (HTTP 401)")]
    Unauthorized {
        /// The node's RPC URL.
        url: String,
    },
    /// An HTTP error without a JSON-RPC answer.
    #[error("node {url}: HTTP {status} to {method}: {body}")]
    Http {
        /// The node's RPC URL.
        url: String,
        /// The RPC method called.
        method: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// An answer that is not JSON-RPC.
    #[error("node {url}: answer to {method} is not JSON-RPC: {snippet}")]
    NotJson {
        /// The node's RPC URL.
        url: String,
        /// The RPC method called.
        method: String,
        /// The start of the answer.
        snippet: String,
    },
    /// A JSON-RPC answer of the wrong shape.
    #[error("node {url}: answer to {method}")]
    BadAnswer {
        /// The node's RPC URL.
        url: String,
        /// The RPC method called.
        method: String,
        /// What is wrong with it.
        #[source]
        problem: AnswerError,
    },
    /// The node answered with a JSON-RPC error.
    #[error("node: {method} failed: {message} (code {code})")]
    Rpc {
        /// The RPC method called.
        method: String,
        /// The JSON-RPC error code (Bitcoin Core's `RPC_*`).
        code: i64,
        /// The error message.
        message: String,
    },
    /// The cookie file could not be read.
    #[error("the node's cookie file")]
    Cookie(#[source] crate::untrusted_files::FileError),
    /// The cookie file does not hold `USER:PASSWORD`.
    #[error("cookie file {path}: not USER:PASSWORD")]
    CookieFormat {
        /// The cookie file.
        path: String,
    },
}

impl NodeError {
    /// Whether the node may answer differently later (down, restarting,
    /// still syncing) rather than having refused for good.
    pub fn is_transient(&self) -> bool {
        match self {
            NodeError::Connect { .. } | NodeError::Cookie(_) | NodeError::CookieFormat { .. } => {
                true
            }
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
    /// The node's RPC URL.
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
                // A cookie is one short line; a FIFO or a huge file is not one.
                let text =
                    crate::untrusted_files::read_text(path, 4096).map_err(NodeError::Cookie)?;
                let text = text.trim();
                if !text.contains(':') || text.len() > 1024 {
                    return Err(NodeError::CookieFormat {
                        path: path.display().to_string(),
                    });
                }
                text.to_owned()
            }
        };
        Ok(Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )))
    }

    /// Calls `method` and returns its `result`, parsed as `T` (a `null`
    /// result is `None`).
    pub fn call_nullable<T: DeserializeOwned>(
        &self,
        method: &str,
        params: impl serde::Serialize,
    ) -> Result<Option<T>, NodeError> {
        let response = self.send(method, params)?;
        let status = response.status();
        let mut body = Recorded::new(response.into_reader().take(MAX_BODY));
        let parsed = answer::parse::<T>(&mut body);
        let http = |body: &Recorded<_>| NodeError::Http {
            url: self.url.clone(),
            method: method.to_owned(),
            status,
            body: body.snippet(),
        };
        let answer = match parsed {
            Ok(answer) => answer,
            Err(AnswerError::NotJson { .. }) if status >= 400 => return Err(http(&body)),
            Err(AnswerError::NotJson { .. }) => {
                return Err(NodeError::NotJson {
                    url: self.url.clone(),
                    method: method.to_owned(),
                    snippet: body.snippet(),
                });
            }
            Err(problem) => {
                return Err(NodeError::BadAnswer {
                    url: self.url.clone(),
                    method: method.to_owned(),
                    problem,
                });
            }
        };
        if let Some(error) = answer.error {
            return Err(NodeError::Rpc {
                method: method.to_owned(),
                code: error.code.unwrap_or(0),
                message: error.message.unwrap_or_default(),
            });
        }
        match answer.result {
            Some(result) => Ok(result),
            None if status >= 400 => Err(http(&body)),
            None => Err(NodeError::NotJson {
                url: self.url.clone(),
                method: method.to_owned(),
                snippet: body.snippet(),
            }),
        }
    }

    /// Posts one request; a node's RPC error comes back as a response too
    /// (nodes answer them with HTTP 404/500 and a JSON body).
    fn send(
        &self,
        method: &str,
        params: impl serde::Serialize,
    ) -> Result<ureq::Response, NodeError> {
        // Serialized straight into the body: a block's hex is in memory
        // once more here, not three times (a copy in a JSON tree, the tree
        // as text, the text as the body).
        let body = serde_json::to_vec(&Request {
            jsonrpc: "1.0",
            id: "hashrig",
            method,
            params,
        })
        .map_err(|source| NodeError::Request {
            url: self.url.clone(),
            method: method.to_owned(),
            source,
        })?;
        let mut request = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json");
        if let Some(auth) = self.authorization()? {
            request = request.set("Authorization", &auth);
        }
        match request.send_bytes(&body) {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(401, _)) => Err(NodeError::Unauthorized {
                url: self.url.clone(),
            }),
            Err(ureq::Error::Status(_, response)) => Ok(response),
            Err(ureq::Error::Transport(t)) => Err(NodeError::Connect {
                url: self.url.clone(),
                source: Box::new(t),
            }),
        }
    }

    /// Calls `method` and returns its `result`, which must not be `null`.
    pub fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, NodeError> {
        self.call_nullable(method, params)?
            .ok_or_else(|| NodeError::BadAnswer {
                url: self.url.clone(),
                method: method.to_owned(),
                problem: AnswerError::NullResult,
            })
    }
}

/// A JSON-RPC request.
#[derive(serde::Serialize)]
struct Request<'a, P> {
    jsonrpc: &'static str,
    id: &'static str,
    method: &'a str,
    params: P,
}

/// A reader that keeps the first bytes it passes on, to show what a node
/// said when it was not JSON.
struct Recorded<R> {
    inner: R,
    start: Vec<u8>,
}

impl<R: Read> Recorded<R> {
    fn new(inner: R) -> Self {
        Recorded {
            inner,
            start: Vec::with_capacity(SNIPPET),
        }
    }

    fn snippet(&self) -> String {
        String::from_utf8_lossy(&self.start).into_owned()
    }
}

impl<R: Read> Read for Recorded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let room = SNIPPET - self.start.len();
        self.start.extend_from_slice(&buf[..n.min(room)]);
        Ok(n)
    }
}
