//! The cgminer-compatible API (`--cgminer-api 127.0.0.1:4028`): what farm
//! managers, farm OS agents and miner-polling libraries read, as cgminer's
//! API-README documents it. One request per TCP connection, text
//! `cmd|param` or JSON `{"command":…,"parameter":…}`, answered in kind and
//! ended with a NUL byte; `summary+devs` joins report commands.
//! Privileged commands only for `W:` addresses of `--cgminer-api-allow`.
//!
//! Unlike the HTTP API it has no keys (cgminer's has none, and the tools
//! that speak it send none): who may reach it is the bind address's and
//! the allow list's business.

mod allow;
mod commands;
mod reply;
mod request;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use allow::{Access, AllowList, AllowListError};
use commands::After;
use reply::{Code, Reply, Stamp};
pub use request::MAX_REQUEST;
use request::{Call, Request};

use super::admission::{self, Caps, Registry, Slot};
use crate::control::RigControl;
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// Where the rig's jobs come from: what `pools` reports a pool to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A Stratum pool.
    Stratum,
    /// A node's `getblocktemplate`.
    Node,
    /// `hashrig bench`: no pool.
    Bench,
}

/// What `devdetails` says of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDetails {
    /// The name cgminer clients show.
    pub name: String,
    /// `opencl`, `vulkan` or `cpu`.
    pub driver: String,
    /// The kernel build and shape it runs.
    pub kernel: String,
    /// The PCI bus id, where known.
    pub pci_bus_id: Option<String>,
}

/// The API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgminerApiConfig {
    /// Where to listen.
    pub bind: SocketAddr,
    pub(crate) allow: AllowList,
    /// Connections open at once, at most; at the cap the oldest one still
    /// waiting for its request (of the address holding the most) is closed
    /// to make room, so a flood of idle connections never delays an answer.
    pub max_connections: usize,
    /// The same, from one address.
    pub max_per_address: usize,
    /// From accepting a connection to its first byte: the tools that speak
    /// this API send their request as soon as they connect.
    pub first_byte_timeout: Duration,
    /// From accepting a connection to a whole request.
    pub read_timeout: Duration,
}

impl CgminerApiConfig {
    /// Listens on `bind`, answering the addresses `allow` lets in.
    pub fn new(bind: SocketAddr, allow: AllowList) -> Self {
        // Well inside the process's file descriptors, which the devices,
        // pools and the HTTP API need too.
        let max_connections = admission::descriptor_limit().map_or(64, |n| (n / 8).clamp(8, 64));
        CgminerApiConfig {
            bind,
            allow,
            max_connections,
            max_per_address: (max_connections / 2).max(4),
            first_byte_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(5),
        }
    }

    fn caps(&self) -> Caps {
        Caps {
            total: self.max_connections,
            per_address: self.max_per_address,
        }
    }
}

/// Everything a command reads or steers.
pub struct Context {
    /// The rig's counters.
    pub stats: Arc<Stats>,
    /// The operator controls the commands act on.
    pub control: Arc<RigControl>,
    /// The devices, in the order the API numbers them.
    pub devices: Vec<DeviceDetails>,
    /// What the rig mines (pool, node, benchmark).
    pub source: SourceKind,
    /// The STATUS `Description`: `hashrig <version>`.
    pub description: String,
}

/// A running cgminer API.
pub struct CgminerApi {
    /// Where it listens (the real port when 0 was asked for).
    pub addr: SocketAddr,
    thread: JoinHandle<()>,
}

impl CgminerApi {
    /// Waits for it to stop (after the shutdown signal) until `deadline`.
    pub fn join_until(self, deadline: Instant) -> bool {
        super::join_until(self.thread, deadline)
    }
}

/// Binds now (a bad or taken address is an error at start) and answers on
/// a thread of its own until `shutdown` fires. `quit` and `restart`
/// trigger `shutdown` (a restart also marks the control for `main`).
pub fn start(
    config: CgminerApiConfig,
    context: Context,
    shutdown: Shutdown,
) -> std::io::Result<CgminerApi> {
    let listener = std::net::TcpListener::bind(config.bind)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    if !config.bind.ip().is_loopback() && !config.allow.grants_privilege() {
        tracing::info!("cgminer API on {addr}: read-only (no W: entry in --cgminer-api-allow)");
    } else if !config.bind.ip().is_loopback() {
        tracing::warn!(
            "cgminer API on {addr}, beyond this machine: it has no keys, only the allow list"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let context = Arc::new(context);
    let config = Arc::new(config);
    let thread = std::thread::Builder::new()
        .name("cgminer-api".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("cgminer API: {e}");
                        return;
                    }
                };
                serve(listener, config, context, shutdown).await;
            });
        })?;
    tracing::info!("cgminer API on {addr}");
    Ok(CgminerApi { addr, thread })
}

/// Accepts every connection at once (a waiting client holds no slot that
/// another needs) and answers each on a task of its own, under the caps of
/// [`admission`]: a request is answered within milliseconds however many
/// idle or slow connections are open.
async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<CgminerApiConfig>,
    context: Arc<Context>,
    shutdown: Shutdown,
) {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let mut refused_logged = Instant::now() - Duration::from_secs(60);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = wait_for(&shutdown) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: the pending
                // connection stays queued; try again shortly.
                tracing::debug!("cgminer API: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if config.allow.access(peer.ip()) == Access::None {
            tracing::debug!(
                "cgminer API: {} is not in --cgminer-api-allow; closed",
                peer.ip()
            );
            continue;
        }
        let admitted = registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(peer.ip(), config.caps());
        let Some((id, slot)) = admitted else {
            if refused_logged.elapsed() >= Duration::from_secs(60) {
                tracing::warn!(
                    "cgminer API: connection from {} refused: {} connections open, every one being answered",
                    peer.ip(),
                    config.max_connections
                );
                refused_logged = Instant::now();
            }
            continue;
        };
        let (config, context, shutdown) = (config.clone(), context.clone(), shutdown.clone());
        let registry = registry.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection(stream, peer.ip(), &slot, &config, &context, &shutdown) => {}
                _ = slot.close.cancelled() => {}
            }
            registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
        });
    }
}

async fn wait_for(shutdown: &Shutdown) {
    while !shutdown.is_triggered() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads one request, bounded in size and time: `None` when the client
/// sent nothing in time.
async fn read_request(stream: &mut TcpStream, config: &CgminerApiConfig) -> Option<Vec<u8>> {
    let started = tokio::time::Instant::now();
    let deadline = started + config.read_timeout;
    let first_byte = (started + config.first_byte_timeout).min(deadline);
    let mut buffer = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        // Text has no terminator of its own: once something came, a pause
        // ends it (cgminer answers its first read).
        let wait = if buffer.is_empty() {
            first_byte
        } else if buffer.first() == Some(&b'{') {
            deadline
        } else {
            (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline)
        };
        match tokio::time::timeout_at(wait, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                buffer.extend_from_slice(&chunk[..n]);
                if buffer.len() > MAX_REQUEST || request::is_complete(&buffer) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    (!buffer.is_empty()).then_some(buffer)
}

async fn connection(
    mut stream: TcpStream,
    ip: IpAddr,
    slot: &Slot,
    config: &CgminerApiConfig,
    context: &Context,
    shutdown: &Shutdown,
) {
    let access = config.allow.access(ip);
    let Some(bytes) = read_request(&mut stream, config).await else {
        return;
    };
    // Being answered: no longer a connection to evict.
    let _busy = slot.busy();
    let stamp = Stamp {
        when: crate::stats::unix_now(),
        description: &context.description,
    };
    let (mut answer, after) = match Request::try_from(bytes.as_slice()) {
        Ok(request) => respond(&request, context, access == Access::Write, stamp),
        Err(size) => {
            let json = bytes.first() == Some(&b'{');
            let reply = Reply::status(
                Code::InvalidCommand,
                format!("Request of {size} bytes: more than {MAX_REQUEST}"),
            );
            (render(&reply, json, stamp), After::Nothing)
        }
    };
    answer.push('\0');
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(config.read_timeout, write)
        .await
        .unwrap_or(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write timed out",
        )))
    {
        tracing::debug!("cgminer API: {ip}: {e}");
    }
    match after {
        After::Nothing => {}
        After::Quit => shutdown.trigger(),
        After::Restart => {
            context.control.request_restart();
            shutdown.trigger();
        }
    }
}

fn render(reply: &Reply, json: bool, stamp: Stamp) -> String {
    if json {
        reply::json(reply, stamp)
    } else {
        reply::text(reply, stamp)
    }
}

fn answer_call(
    call: &Call,
    parameter: Option<&str>,
    context: &Context,
    privileged: bool,
    joined: bool,
) -> (Reply, After) {
    match call.command {
        None => (
            Reply::status(Code::InvalidCommand, "Invalid command"),
            After::Nothing,
        ),
        // cgminer: a command that does not join is refused in a join.
        Some(c) if joined && !c.is_joinable() => (
            Reply::status(
                Code::AccessDenied,
                format!("Access denied to '{}' command", c.name()),
            ),
            After::Nothing,
        ),
        Some(c) => context.answer(c, parameter, privileged),
    }
}

/// The whole reply to a request, and what to do once it is sent.
fn respond(
    request: &Request,
    context: &Context,
    privileged: bool,
    stamp: Stamp,
) -> (String, After) {
    match request {
        Request::Malformed { code, json } => {
            let message = match code {
                Code::InvalidJson => "Invalid JSON",
                Code::MissingJsonCommand => "Missing JSON 'command'",
                _ => "Invalid command",
            };
            (
                render(&Reply::status(*code, message), *json, stamp),
                After::Nothing,
            )
        }
        Request::Single {
            call,
            parameter,
            json,
        } => {
            let (reply, after) =
                answer_call(call, parameter.as_deref(), context, privileged, false);
            (render(&reply, *json, stamp), after)
        }
        Request::Joined { calls, json } => {
            let replies: Vec<(String, Reply)> = calls
                .iter()
                .map(|call| {
                    let (reply, _) = answer_call(call, None, context, privileged, true);
                    (call.name.clone(), reply)
                })
                .collect();
            (reply::joined(&replies, *json, stamp), After::Nothing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(devices: usize, pools: usize) -> Context {
        let names = (0..devices).map(|i| format!("opencl#{i} Card")).collect();
        let pool_names = (0..pools)
            .map(|i| format!("stratum+tcp://pool{i}:3333"))
            .collect();
        Context {
            stats: Arc::new(Stats::new(names).with_pools(pool_names)),
            control: Arc::new(RigControl::new(devices, pools)),
            devices: (0..devices)
                .map(|i| DeviceDetails {
                    name: "Card".into(),
                    driver: "opencl".into(),
                    kernel: "generic".into(),
                    pci_bus_id: Some(format!("0000:0{i}:00.0")),
                })
                .collect(),
            source: SourceKind::Stratum,
            description: "hashrig test".into(),
        }
    }

    const STAMP: Stamp = Stamp {
        when: 1,
        description: "hashrig test",
    };

    fn ask(context: &Context, text: &str, privileged: bool) -> serde_json::Value {
        let request = Request::try_from(text.as_bytes()).unwrap();
        let (answer, _) = respond(&request, context, privileged, STAMP);
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer}: {e}"))
    }

    #[test]
    fn pool_commands_follow_cgminer() {
        let c = context(1, 2);
        let v = ask(&c, r#"{"command":"disablepool","parameter":"1"}"#, true);
        assert_eq!(v["STATUS"][0]["Code"], 48, "{v}");
        let v = ask(&c, r#"{"command":"disablepool","parameter":"1"}"#, true);
        assert_eq!(v["STATUS"][0]["Code"], 50, "{v}");
        let v = ask(&c, r#"{"command":"disablepool","parameter":"0"}"#, true);
        assert_eq!(v["STATUS"][0]["Code"], 51, "{v}");
        assert_eq!(v["STATUS"][0]["STATUS"], "E");
        let v = ask(&c, r#"{"command":"pools"}"#, false);
        assert_eq!(v["POOLS"][1]["Status"], "Disabled", "{v}");
        let v = ask(&c, r#"{"command":"switchpool","parameter":"1"}"#, true);
        assert_eq!(v["STATUS"][0]["Code"], 27, "{v}");
        assert!(c.control.is_pool_enabled(1));
        let v = ask(&c, r#"{"command":"switchpool","parameter":"9"}"#, true);
        assert_eq!(v["STATUS"][0]["Code"], 26, "{v}");
        assert_eq!(v["STATUS"][0]["Msg"], "Invalid pool id 9 - range is 0 - 1");
        let v = ask(&c, r#"{"command":"enablepool"}"#, true);
        assert_eq!(v["STATUS"][0]["Code"], 25, "{v}");
    }

    #[test]
    fn device_commands_and_checks() {
        let c = context(2, 1);
        let v = ask(&c, r#"{"command":"gpudisable","parameter":"1"}"#, true);
        assert_eq!(v["STATUS"][0]["Code"], 12, "{v}");
        assert!(!c.control.is_enabled(1));
        let v = ask(&c, r#"{"command":"gpu","parameter":"1"}"#, false);
        assert_eq!(v["GPU"][0]["Enabled"], "N", "{v}");
        assert_eq!(v["GPU"][0]["PCI Bus"], "0000:01:00.0");
        let v = ask(&c, r#"{"command":"gpu","parameter":"x"}"#, false);
        assert_eq!(v["STATUS"][0]["Code"], 1, "{v}");
        c.control.mark_failed(1);
        let v = ask(&c, r#"{"command":"gpuenable","parameter":"1"}"#, true);
        assert_eq!(v["STATUS"][0]["Code"], 4, "{v}");
        let v = ask(&c, r#"{"command":"check","parameter":"quit"}"#, false);
        assert_eq!(v["CHECK"][0]["Exists"], "Y");
        assert_eq!(v["CHECK"][0]["Access"], "N");
        let v = ask(&c, r#"{"command":"check","parameter":"addpool"}"#, true);
        assert_eq!(v["CHECK"][0]["Exists"], "N");
        let v = ask(&c, r#"{"command":"gpucount"}"#, false);
        assert_eq!(v["GPUS"][0]["Count"], 2);
    }

    #[test]
    fn joins_refuse_what_does_not_join() {
        let c = context(1, 1);
        let v = ask(&c, r#"{"command":"summary+quit+gpu+bogus"}"#, true);
        assert_eq!(v["summary"][0]["STATUS"][0]["Code"], 11, "{v}");
        assert_eq!(v["quit"][0]["STATUS"][0]["Code"], 45, "{v}");
        assert_eq!(v["gpu"][0]["STATUS"][0]["Code"], 45, "{v}");
        assert_eq!(v["bogus"][0]["STATUS"][0]["Code"], 14, "{v}");
    }
}
