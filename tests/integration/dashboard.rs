//! The dashboard in a real browser: headless Chromium (Debian's, installed
//! by the test command) opens the page against a live `hashrig bench` and
//! is driven and read through Chrome's DevTools protocol.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use hashrig::api::keys::{new_key, Scope};
use hashrig::found::journal::unix_now;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::api::call;
use crate::common::{hashrig_command, PATIENCE};

/// Headless Chromium with a DevTools connection to its one page.
struct Browser {
    child: std::process::Child,
    socket: WebSocket<TcpStream>,
    next_id: u64,
    profile: PathBuf,
}

impl Browser {
    fn start() -> Browser {
        let profile = std::env::temp_dir().join(format!("hashrig-chromium-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let child = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromium: the test command installs Debian's chromium");
        // Chromium writes the port it chose here.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + PATIENCE;
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse::<u16>().ok())
            {
                break port;
            }
            assert!(Instant::now() < deadline, "chromium gave no DevTools port");
            std::thread::sleep(Duration::from_millis(100));
        };
        let targets: Value = serde_json::from_str(
            &ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
                .call()
                .unwrap()
                .into_string()
                .unwrap(),
        )
        .unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (socket, _) = tungstenite::connect(url).unwrap();
        let socket = match socket.into_inner() {
            tungstenite::stream::MaybeTlsStream::Plain(tcp) => {
                tcp.set_read_timeout(Some(PATIENCE)).unwrap();
                WebSocket::from_raw_socket(tcp, tungstenite::protocol::Role::Client, None)
            }
            _ => panic!("DevTools is plain TCP"),
        };
        let mut browser = Browser {
            child,
            socket,
            next_id: 0,
            profile,
        };
        browser.call("Page.enable", json!({}));
        browser
    }

    /// One DevTools command and its result (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(request)).unwrap();
        loop {
            let message = self.socket.read().unwrap();
            let Ok(text) = message.to_text() else {
                continue;
            };
            let Ok(reply) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// A JavaScript expression's value in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.eval(expression);
            if !(value.is_null() || value == false || value == "" || value == 0) {
                return value;
            }
            if Instant::now() > deadline {
                let body = self.eval("document.body.innerText");
                panic!("timed out waiting for {what}; the page says:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Loads `url` afresh (a new fragment alone would not reload it).
    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": "about:blank"}));
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(
            "the page",
            "document.readyState === 'complete' && !!document.getElementById('board')",
        );
    }

    fn screenshot(&mut self, path: &Path) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `hashrig bench` with the HTTP API on a port of its choosing.
struct Bench {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Bench {
    fn start(keys: &Path) -> Bench {
        let mut child = hashrig_command()
            .args([
                "bench",
                "--backend",
                "cpu",
                "--cpu-threads",
                "1",
                "--seconds",
                "300",
            ])
            .args(["--api-bind", "127.0.0.1:0", "--api-keys"])
            .arg(keys)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("bench ended").unwrap();
            if let Some(rest) = line.split("API on http://").nth(1) {
                break rest.split(';').next().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Bench { child, addr }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_dashboard_in_a_browser() {
    let dir = std::env::temp_dir().join(format!("hashrig-dashboard-{}", std::process::id()));
    let keys = dir.join("keys.toml");
    let read = new_key(&keys, "wall", Scope::Read, None, unix_now()).unwrap();
    let control = new_key(&keys, "ops", Scope::Control, None, unix_now()).unwrap();
    let bench = Bench::start(&keys);
    let base = format!("http://{}", bench.addr);

    // The page needs no key, and is locked down; no data without a key.
    let page = ureq::get(&format!("{base}/")).call().unwrap();
    let csp = page
        .header("Content-Security-Policy")
        .unwrap_or_default()
        .to_owned();
    for needed in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(needed), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(page.header("Referrer-Policy"), Some("no-referrer"));
    assert_eq!(
        call("GET", &format!("{base}/v1/summary"), None, None).0,
        401
    );

    let mut browser = Browser::start();

    // A read key: the device, its hashrate, the chart; no controls.
    browser.open(&format!("{base}/#key={read}"));
    let name = browser.wait_for(
        "the device row",
        "document.querySelector('#devices tbody tr td.name')?.textContent",
    );
    assert!(name.as_str().unwrap().contains("cpu#0"), "{name}");
    let shown = browser.wait_for(
        "a hashrate",
        "(t => t && t !== '0 H/s' && t)(document.querySelector('#devices tbody tr td.hashrate')?.textContent)",
    );
    assert!(shown.as_str().unwrap().ends_with("H/s"), "{shown}");
    let points = browser.wait_for(
        "points on the chart",
        "(document.querySelector('#chart polyline')?.getAttribute('points') || '').trim().split(' ').filter(Boolean).length",
    );
    assert!(points.as_u64().unwrap() >= 1, "{points}");
    // A line, not a dot: two points (the history's step is 5 s).
    browser.wait_for(
        "a line on the chart",
        "(document.querySelector('#chart polyline')?.getAttribute('points') || '').trim().split(' ').filter(Boolean).length >= 2",
    );
    assert_eq!(
        browser.eval("document.getElementById('whoami').textContent"),
        "wall (read)"
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('button[data-action]').length"),
        0
    );
    assert_eq!(
        browser.eval("getComputedStyle(document.getElementById('controls')).display"),
        "none"
    );
    assert_eq!(
        browser.eval("location.hash"),
        "",
        "the key stays in the address bar"
    );
    browser.wait_for(
        "the live stream",
        "document.getElementById('stream-state').textContent === 'live'",
    );
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    browser.screenshot(&shots.join("dashboard.png"));
    // On a phone: nothing wider than the screen (tables scroll in place).
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    browser.wait_for(
        "the phone layout",
        "window.innerWidth <= 400 && document.documentElement.scrollWidth <= window.innerWidth",
    );
    browser.screenshot(&shots.join("dashboard-phone.png"));
    browser.call("Emulation.clearDeviceMetricsOverride", json!({}));

    // A control key: its disable click disables the device.
    browser.open(&format!("{base}/#key={control}"));
    browser.wait_for(
        "the disable button",
        "document.querySelector('#devices button[data-action=disable]')",
    );
    browser.eval("document.getElementById('reason').value = 'browser test'");
    browser.eval("document.querySelector('#devices button[data-action=disable]').click()");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, body) = call("GET", &format!("{base}/v1/devices"), Some(&read), None);
        let devices: Value = serde_json::from_str(&body).unwrap();
        if devices[0]["enabled"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the click did not disable it: {devices}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    browser.wait_for(
        "the enable button",
        "document.querySelector('#devices button[data-action=enable]')",
    );
    browser.wait_for(
        "the control event in the log",
        "[...document.querySelectorAll('#log li')].some(li => li.textContent.includes('device 0: disable (browser test)'))",
    );

    // A wrong key: the sign-in form says why.
    browser.open(&format!("{base}/#key=hrk_wrong"));
    let said = browser.wait_for(
        "a sign-in error",
        "document.getElementById('signin').hidden === false && document.getElementById('signin-error').textContent",
    );
    assert!(said.as_str().unwrap().contains("unknown API key"), "{said}");
    assert_eq!(
        browser.eval("document.getElementById('board').hidden"),
        true
    );
    let _ = std::fs::remove_dir_all(&dir);
}
