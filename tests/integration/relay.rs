//! A relay for node RPC (HTTP), between the miner and a real node, that
//! can take the node away at the worst moment: the tests' way to lose a
//! node exactly when a block is found, every time.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A relay between the miner and the node that, once armed, goes down the
/// moment a `submitblock` comes through (before passing it on), and stays
/// down: a node lost exactly when a block was found.
pub struct Relay {
    pub url: String,
    pub armed: Arc<AtomicBool>,
    pub down: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(node_url: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = node_url.trim_start_matches("http://").to_owned();
        let armed = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let (arm, fall) = (armed.clone(), down.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                if fall.load(Ordering::SeqCst) {
                    continue; // dropped: as good as refused
                }
                let (target, arm, fall) = (target.clone(), arm.clone(), fall.clone());
                std::thread::spawn(move || relay_one(client, &target, &arm, &fall));
            }
        });
        Relay { url, armed, down }
    }
}

/// One HTTP request through to the node and its answer back, with the
/// connection closed after (so every request is seen here).
fn relay_one(mut client: std::net::TcpStream, target: &str, armed: &AtomicBool, down: &AtomicBool) {
    let mut request = Vec::new();
    let mut buf = [0u8; 65536];
    let body_start = loop {
        let Ok(n) = client.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..body_start]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < body_start + length {
        let Ok(n) = client.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&request[body_start..]);
    if armed.load(Ordering::SeqCst) && body.contains("\"submitblock\"") {
        down.store(true, Ordering::SeqCst);
        return;
    }
    // Ask the node to close after its answer, and pass the answer back.
    let head = String::from_utf8_lossy(&request[..body_start - 2]).replace("keep-alive", "close");
    let Ok(mut upstream) = std::net::TcpStream::connect(target) else {
        return;
    };
    let _ = upstream.write_all(head.as_bytes());
    let _ = upstream.write_all(b"Connection: close\r\n\r\n");
    let _ = upstream.write_all(&request[body_start..]);
    let mut answer = Vec::new();
    let _ = upstream.read_to_end(&mut answer);
    let _ = client.write_all(&answer);
}
