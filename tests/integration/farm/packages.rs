//! The farm OS packages: built by their script, their stats scripts run
//! against a live rig as the farm OS agents run them.

use serde_json::Value;

use super::{ask_json, start_rig, RunningHashrig};
use crate::common::{wait_until, PATIENCE};
use crate::testpool::TestPool;

/// The farm OS tarballs, built by `scripts/package-farm.sh` from the
/// binary under test and unpacked: (hiveos folder, mmpos folder).
fn farm_packages(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/package-farm.sh"
        ))
        .args(["--binary", env!("CARGO_BIN_EXE_hashrig"), "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "package-farm.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = env!("CARGO_PKG_VERSION");
    let mut unpacked = Vec::new();
    for system in ["hiveos", "mmpos"] {
        let tarball = dir.join(system).join(format!("hashrig-{version}.tar.gz"));
        let listing = std::process::Command::new("tar")
            .arg("tzvf")
            .arg(&tarball)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
        // One folder named as the miner, holding everything.
        for line in listing.lines() {
            let path = line.split_whitespace().last().unwrap();
            assert!(path.starts_with("hashrig/"), "{system}: {line}");
            if path.ends_with(".sh") || path == "hashrig/hashrig" {
                assert!(
                    line.starts_with("-rwxr-xr-x"),
                    "{system}: not executable: {line}"
                );
            }
        }
        let into = dir.join(format!("{system}-unpacked"));
        std::fs::create_dir_all(&into).unwrap();
        let status = std::process::Command::new("tar")
            .arg("-C")
            .arg(&into)
            .arg("-xzf")
            .arg(&tarball)
            .status()
            .unwrap();
        assert!(status.success());
        unpacked.push(into.join("hashrig"));
    }
    let hive = unpacked.remove(0);
    let manifest = std::fs::read_to_string(hive.join("h-manifest.conf")).unwrap();
    assert!(
        manifest.contains(&format!("CUSTOM_VERSION={version}\n")),
        "{manifest}"
    );
    // A sandbox's paths for HiveOS's /hive and /var/log.
    let manifest = manifest
        .replace(
            "/hive/miners/custom/$CUSTOM_NAME/config.toml",
            &dir.join("hive/config.toml").display().to_string(),
        )
        .replace(
            "/var/log/miner/$CUSTOM_NAME/$CUSTOM_NAME",
            &dir.join("log/hashrig").display().to_string(),
        );
    std::fs::write(hive.join("h-manifest.conf"), manifest).unwrap();
    (hive, unpacked.remove(0))
}

fn run_script(script: &std::path::Path, env: &[(&str, String)]) -> (bool, String) {
    let mut command = std::process::Command::new("bash");
    command.arg(script).args(["1", "/dev/null"]);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// What HiveOS documents of `stats`, checked field by field.
fn check_hive_stats(v: &Value, devices: usize) {
    let stats = &v["stats"];
    let hs: Vec<f64> = stats["hs"]
        .as_array()
        .unwrap_or_else(|| panic!("no hs: {v}"))
        .iter()
        .map(|h| h.as_f64().unwrap())
        .collect();
    assert_eq!(hs.len(), devices, "{v}");
    assert!(hs.iter().all(|h| *h > 0.0), "{v}");
    let khs = v["khs"].as_f64().unwrap();
    assert!(khs > 0.0, "{v}");
    assert_eq!(stats["hs_units"], "khs");
    for list in ["temp", "fan", "bus_numbers"] {
        assert_eq!(
            stats[list].as_array().map(Vec::len),
            Some(devices),
            "{list}: {v}"
        );
    }
    assert!(stats["uptime"].as_u64().is_some(), "{v}");
    assert_eq!(stats["ver"], env!("CARGO_PKG_VERSION"));
    assert_eq!(stats["algo"], "sha256d");
    let ar = stats["ar"].as_array().unwrap();
    assert_eq!(ar.len(), 3, "{v}");
    assert!(ar.iter().all(|n| n.as_u64().is_some()), "{v}");
}

#[test]
fn farm_os_packages_build_and_their_stats_validate() {
    let dir = std::env::temp_dir().join(format!("hashrig-farm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (hive, mmpos) = farm_packages(&dir);

    // h-config.sh turns a flight sheet into a config file hashrig accepts.
    let flight_sheet = [
        (
            "CUSTOM_URL",
            "pool.example.com:3333 stratum+ssl://backup.example.com:443".to_owned(),
        ),
        ("CUSTOM_TEMPLATE", "bc1qexample.rig\"1".to_owned()),
        ("CUSTOM_PASS", "x".to_owned()),
    ];
    let (ok, _) = run_script(&hive.join("h-config.sh"), &flight_sheet);
    assert!(ok, "h-config.sh failed");
    let config = std::fs::read_to_string(dir.join("hive/config.toml")).unwrap();
    assert!(
        config.contains("url = \"stratum+tcp://pool.example.com:3333\""),
        "{config}"
    );
    assert!(
        config.contains("user = \"bc1qexample.rig\\\"1\""),
        "{config}"
    );
    assert!(config.contains("[cgminer_api]"), "{config}");
    let (ok, _) = run_script(&hive.join("h-config.sh"), &flight_sheet[2..]);
    assert!(!ok, "h-config.sh took a flight sheet without a pool");

    // Nothing listening: zero and null, never a broken JSON.
    let nobody = [
        ("CUSTOM_API_PORT", "1".to_owned()),
        ("EXTERNAL_API_PORT", "1".to_owned()),
    ];
    let (_, out) = run_script(&hive.join("h-stats.sh"), &nobody);
    assert_eq!(out, r#"{"khs":0,"stats":null}"#);
    let (ok, _) = run_script(&mmpos.join("mmp-stats.sh"), &nobody);
    assert!(!ok);

    // A live `hashrig bench`, read as HiveOS's agent and mmpOS's do.
    let bench = RunningHashrig::start(&["--seconds", "60"]);
    let port = bench.addr.port().to_string();
    wait_until("a hashrate", PATIENCE, || {
        let v = ask_json([127, 0, 0, 1], bench.addr, r#"{"command":"summary"}"#);
        v["SUMMARY"][0]["MHS 5s"].as_f64().unwrap_or(0.0) > 0.0
    });
    let env = [
        ("CUSTOM_API_PORT", port.clone()),
        ("EXTERNAL_API_PORT", port),
    ];
    let (ok, out) = run_script(&hive.join("h-stats.sh"), &env);
    assert!(ok);
    check_hive_stats(&serde_json::from_str(&out).unwrap(), 1);
    // As the agent runs it: sourced, leaving $khs and $stats.
    let sourced = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1" >/dev/null; printf '{"khs":%s,"stats":%s}' "$khs" "$stats""#)
        .arg("bash")
        .arg(hive.join("h-stats.sh"))
        .env("CUSTOM_API_PORT", &env[0].1)
        .output()
        .unwrap();
    check_hive_stats(
        &serde_json::from_slice(&sourced.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&sourced.stdout))),
        1,
    );
    let (ok, out) = run_script(&mmpos.join("mmp-stats.sh"), &env);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["busid"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(v["hash"][0].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["units"], "khs");
    assert_eq!(v["air"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(v["miner_name"], "hashrig");
    assert_eq!(v["miner_version"], env!("CARGO_PKG_VERSION"));
    drop(bench);

    // Bus numbers as HiveOS wants them: the PCI bus, in decimal.
    let pool = TestPool::start(1.0);
    let rig = start_rig(&[&pool], "W:127.0.0.1");
    let port = rig.addr().port().to_string();
    wait_until("a hashrate on the rig", PATIENCE, || {
        rig.stats
            .snapshot()
            .devices
            .iter()
            .all(|d| d.hashrate_5s > 0.0)
    });
    let (ok, out) = run_script(
        &hive.join("h-stats.sh"),
        &[("CUSTOM_API_PORT", port.clone())],
    );
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    check_hive_stats(&v, 2);
    assert_eq!(v["stats"]["bus_numbers"], serde_json::json!([10, null]));
    let (_, out) = run_script(&mmpos.join("mmp-stats.sh"), &[("EXTERNAL_API_PORT", port)]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["busid"], serde_json::json!(["0000:0a:00.0", "cpu"]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hiveos_scripts_expand_no_globs_and_pass_on_the_exit_status() {
    let dir = std::env::temp_dir().join(format!("hashrig-farm-globs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (hive, _) = farm_packages(&dir);
    let config = dir.join("hive/config.toml");

    // A flight sheet URL "*:3333", run where a file's name matches it.
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::write(cwd.join("evil.example.net:3333"), "").unwrap();
    let out = std::process::Command::new("bash")
        .arg(hive.join("h-config.sh"))
        .current_dir(&cwd)
        .env("CUSTOM_URL", "*:3333 pool.example.com:3333")
        .env("CUSTOM_TEMPLATE", "wallet.rig")
        .output()
        .unwrap();
    let written = std::fs::read_to_string(&config).unwrap_or_default();
    assert!(
        !written.contains("evil"),
        "a glob was expanded into the config: {written}"
    );
    assert!(
        written.contains("url = \"stratum+tcp://*:3333\""),
        "{written}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // h-run.sh as HiveOS starts it: hashrig's exit status, not tee's. A
    // glob in the extra flags reaches hashrig as written.
    let h_run = |extra: &str| {
        std::process::Command::new("bash")
            .arg(hive.join("h-run.sh"))
            .env("CUSTOM_USER_CONFIG", extra)
            .output()
            .unwrap()
    };
    let out = h_run("--device * --duration 1");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("--device \"*\""), "{log}");
    std::fs::remove_file(&config).unwrap();
    let out = h_run("");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
