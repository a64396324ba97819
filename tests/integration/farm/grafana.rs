//! The Grafana dashboard and the Prometheus scrape example: every metric
//! the dashboard queries is one a rig serves, every query is PromQL that
//! Prometheus's own promtool accepts, and the scrape example is a config
//! promtool accepts.

use std::collections::BTreeSet;
use std::time::Duration;

use hashrig::api::keys::{new_key, Scope};
use hashrig::found::journal::unix_now;
use serde_json::Value;

use crate::api::{call, start_rig};
use crate::testpool::TestPool;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/grafana/hashrig.json"
);
const SCRAPE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/grafana/prometheus.yml"
);

/// Where `scripts/farm-tools.sh` put promtool (`scripts/test.sh` sets it).
fn promtool() -> String {
    std::env::var("HASHRIG_PROMTOOL").expect(
        "HASHRIG_PROMTOOL is not set: run the tests through scripts/test.sh, \
         or eval \"$(bash scripts/farm-tools.sh)\" first",
    )
}

/// Every query of every panel.
fn queries() -> Vec<String> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    queries
}

/// The metric families a query names (a histogram's series by its family).
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = query;
    while let Some(at) = rest.find("hashrig_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(family.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_dashboard_queries_is_served() {
    let first = TestPool::start(0.0003);
    let second = TestPool::start(0.0003);
    let dir = std::env::temp_dir().join(format!("hashrig-grafana-{}", std::process::id()));
    let keys = dir.join("keys.toml");
    let read = new_key(&keys, "prometheus", Scope::Read, None, unix_now()).unwrap();
    let rig = start_rig(&[&first, &second], &keys);
    let url = format!("http://{}/metrics", rig.api.as_ref().unwrap().addr);
    first.wait_for("shares on the first pool", Duration::from_secs(60), |t| {
        !t.accepted.is_empty()
    });
    let (status, text) = call("GET", &url, Some(&read), None);
    assert_eq!(status, 200, "{text}");
    let wanted: BTreeSet<String> = queries().iter().flat_map(|q| metric_names(q)).collect();
    assert!(wanted.len() >= 15, "{wanted:?}");
    for name in &wanted {
        assert!(
            text.contains(&format!("\n# TYPE {name} ")),
            "the dashboard queries {name}, which /metrics does not serve:\n{text}"
        );
    }
    // Cards are labelled by slot.
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "hashrig_device_hashrate"
                && s.labels.get("device") == Some("0")
                && s.labels.get("pci_bus_id") == Some("0000:0a:00.0")),
        "no pci_bus_id label:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn promtool_accepts_the_queries_and_the_scrape_example() {
    let dir = std::env::temp_dir().join(format!("hashrig-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The queries as recording rules, the one form promtool checks offline;
    // Grafana's $instance as the "All" value it stands for.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries().iter().enumerate() {
        let expr = serde_json::to_string(&query.replace("$instance", ".*")).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {expr}\n"
        ));
    }
    let rules_file = dir.join("rules.yml");
    std::fs::write(&rules_file, rules).unwrap();
    let out = std::process::Command::new(promtool())
        .args(["check", "rules"])
        .arg(&rules_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The scrape example, its key file where this test can make one.
    let key = dir.join("hashrig-read.key");
    std::fs::write(&key, "hrk_example\n").unwrap();
    let scrape = std::fs::read_to_string(SCRAPE).unwrap().replace(
        "/etc/prometheus/hashrig-read.key",
        &key.display().to_string(),
    );
    let scrape_file = dir.join("prometheus.yml");
    std::fs::write(&scrape_file, scrape).unwrap();
    let out = std::process::Command::new(promtool())
        .args(["check", "config"])
        .arg(&scrape_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
