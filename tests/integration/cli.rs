//! The `hashrig` binary as scripts drive it: `scan`, `bench`, `devices`,
//! and clear errors on bad input.

use std::process::Output;

use crate::common::mainnet;

fn hashrig(args: &[&str]) -> Output {
    hashrig_with(args, &[])
}

fn hashrig_with(args: &[&str], envs: &[(&str, &str)]) -> Output {
    crate::common::hashrig_command()
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .output()
        .expect("run hashrig")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Standard output as one JSON value per line; panics on anything else.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Every real mainnet header's nonce is found by `scan` in a window around
/// it, on every backend and every CPU path this CPU runs, with the block
/// hash rust-bitcoin computes.
#[test]
fn scan_finds_mainnet_nonces_on_every_backend() {
    // Each CPU path this CPU runs (`devices` lists them), then the GPU APIs.
    let listed = hashrig(&["--quiet", "devices", "--json"]);
    let paths = json_lines(&listed)[0]["driver"]
        .as_str()
        .expect("the CPU's paths")
        .trim_start_matches("paths ")
        .to_owned();
    let mut runs: Vec<Vec<&str>> = paths
        .split(", ")
        .map(|path| vec!["--backend", "cpu", "--cpu-path", path])
        .collect();
    assert!(
        runs.len() >= 2,
        "{paths}: scalar and at least one fast path"
    );
    runs.push(vec!["--backend", "opencl"]);
    runs.push(vec!["--backend", "vulkan"]);
    for run in runs {
        for known in mainnet() {
            let header = hex::encode(bitcoin::consensus::serialize(&known.header));
            let start = (known.nonce - 50_000).to_string();
            let mut args = vec!["--quiet", "scan", "--header", &header, "--start", &start];
            args.extend_from_slice(&["--count", "100000", "--json"]);
            args.extend_from_slice(&run);
            let out = hashrig(&args);
            assert!(out.status.success(), "{run:?}: {}", stderr(&out));
            let lines = json_lines(&out);
            assert_eq!(lines.len(), 1, "{run:?} block {}: {lines:?}", known.height);
            assert_eq!(lines[0]["nonce"], known.nonce);
            assert_eq!(lines[0]["hash"], known.hash);
        }
    }
}

/// Every build of the kernel, forced through the flag, finds each real
/// block's nonce and only it, with rust-bitcoin's hash.
#[test]
fn scan_finds_mainnet_nonces_with_every_kernel_variant() {
    for variant in ["generic", "nvidia", "nvidia-wide", "amd"] {
        for backend in ["opencl", "vulkan"] {
            let known = &mainnet()[1];
            let header = hex::encode(bitcoin::consensus::serialize(&known.header));
            let start = (known.nonce - 30_000).to_string();
            let out = hashrig(&[
                "--quiet",
                "scan",
                "--backend",
                backend,
                "--kernel-variant",
                variant,
                // One lane: the only width with the wide rotations.
                "--vectors",
                "1",
                "--header",
                &header,
                "--start",
                &start,
                "--count",
                "60000",
                "--json",
            ]);
            assert!(
                out.status.success(),
                "{backend} {variant}: {}",
                stderr(&out)
            );
            let lines = json_lines(&out);
            assert_eq!(lines.len(), 1, "{backend} {variant}: {lines:?}");
            assert_eq!(lines[0]["nonce"], known.nonce, "{backend} {variant}");
            assert_eq!(lines[0]["hash"], known.hash, "{backend} {variant}");
        }
    }
}

/// A target about one nonce in 65536 meets, for scans that print several.
fn loose_target_hex() -> String {
    format!("0000ffff{}", "0".repeat(56))
}

const LOOSE_SCAN_COUNT: u32 = 300_000;

/// The nonces in 0..LOOSE_SCAN_COUNT of the first mainnet header that meet
/// the loose target, by rust-bitcoin.
fn nonces_meeting_loose_target() -> Vec<u32> {
    let header = mainnet()[0].header;
    let target = hashrig::pow::target::parse_target(&loose_target_hex()).unwrap();
    (0..LOOSE_SCAN_COUNT)
        .filter(|n| {
            target.is_met_by(
                bitcoin::block::Header {
                    nonce: *n,
                    ..header
                }
                .block_hash(),
            )
        })
        .collect()
}

/// `hashrig scan` of the same header, range and target: the nonces printed.
fn scan_loose(extra_args: &[&str], envs: &[(&str, &str)]) -> Vec<u32> {
    let header = hex::encode(bitcoin::consensus::serialize(&mainnet()[0].header));
    let target = loose_target_hex();
    let count = LOOSE_SCAN_COUNT.to_string();
    let mut args = vec![
        "--quiet", "scan", "--header", &header, "--start", "0", "--count", &count, "--target",
        &target,
    ];
    args.extend_from_slice(extra_args);
    let out = hashrig_with(&args, envs);
    assert!(out.status.success(), "{extra_args:?}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// A custom target: every nonce printed meets it, none is missing.
#[test]
fn scan_with_a_loose_target_prints_exactly_the_meeting_nonces() {
    let expected = nonces_meeting_loose_target();
    assert!(!expected.is_empty());
    assert_eq!(scan_loose(&[], &[]), expected);
}

/// lavapipe runs 16 lanes wide where the CPU has AVX-512 (hashrig asks for
/// it), or at the width the operator set; either way the shader finds
/// exactly the nonces rust-bitcoin finds, and Mesa's shader cache for that
/// width is kept apart from the others (it does not key on the width).
#[test]
fn lavapipe_width_follows_the_cpu_unless_the_operator_sets_it() {
    let expected = nonces_meeting_loose_target();
    assert!(expected.len() > 1);
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    let cache = std::env::temp_dir().join(format!("hashrig-cli-lavapipe-{}", std::process::id()));
    let cache_dir = cache.to_str().unwrap();
    for (operator_width, bits) in [
        (None, if avx512 { Some("512") } else { None }),
        (Some("256"), Some("256")),
    ] {
        let mut envs = vec![("HASHRIG_CACHE_DIR", cache_dir)];
        envs.extend(operator_width.map(|w| ("LP_NATIVE_VECTOR_WIDTH", w)));
        let out = hashrig_with(&["--quiet", "devices", "--json"], &envs);
        assert!(out.status.success(), "{}", stderr(&out));
        let names: Vec<String> = json_lines(&out)
            .iter()
            .filter(|d| d["backend"] == "vulkan" && d["kind"] == "cpu")
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(!names.is_empty(), "no software Vulkan adapter listed");
        if let Some(bits) = bits {
            for name in &names {
                assert!(
                    name.contains(&format!("{bits} bits")),
                    "{operator_width:?}: {name}"
                );
            }
            assert!(cache.join(format!("mesa-lp{bits}")).is_dir());
        }
        let printed = scan_loose(&["--backend", "vulkan"], &envs);
        assert_eq!(printed, expected, "{operator_width:?}");
    }
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn scan_rejects_bad_input_naming_the_value() {
    let good = hex::encode(bitcoin::consensus::serialize(&mainnet()[0].header));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--header".into(),
                "zz".repeat(80),
                "--start".into(),
                "0".into(),
                "--count".into(),
                "1".into(),
            ],
            "zzzz",
        ),
        (
            vec![
                "--header".into(),
                "00".repeat(79),
                "--start".into(),
                "0".into(),
                "--count".into(),
                "1".into(),
            ],
            "79 bytes",
        ),
        (
            vec![
                "--header".into(),
                good.clone(),
                "--start".into(),
                "-5".into(),
                "--count".into(),
                "1".into(),
            ],
            "-5",
        ),
        (
            vec![
                "--header".into(),
                good.clone(),
                "--start".into(),
                "4294967295".into(),
                "--count".into(),
                "2".into(),
            ],
            "2^32",
        ),
        (
            vec![
                "--header".into(),
                good.clone(),
                "--start".into(),
                "0".into(),
                "--count".into(),
                "0".into(),
            ],
            "--count 0",
        ),
        (
            vec![
                "--header".into(),
                good.clone(),
                "--start".into(),
                "0".into(),
                "--count".into(),
                "1".into(),
                "--target".into(),
                "123".into(),
            ],
            "\"123\"",
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["scan".to_string()];
        full.extend(args);
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = hashrig(&refs);
        assert!(!out.status.success(), "{refs:?} succeeded");
        let message = stderr(&out);
        assert!(message.contains(needle), "{refs:?}: {message}");
        assert!(!message.contains("panicked"), "{message}");
    }
}

#[test]
fn bench_json_reports_each_device() {
    let out = hashrig(&[
        "--quiet",
        "bench",
        "--backend",
        "cpu",
        "--cpu-threads",
        "1",
        "--seconds",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["backend"], "cpu");
    assert!(line["hashrate"].as_f64().unwrap() > 0.0);
    assert!(line["nonces"].as_u64().unwrap() > 0);
    assert!(line["seconds"].as_f64().unwrap() >= 1.0);
    assert_eq!(line["hw_errors"], 0);
    assert!(line["device"].is_string());
}

#[test]
fn bench_rejects_bad_settings() {
    for (args, needle) in [
        (vec!["bench", "--seconds", "0"], "--seconds"),
        (vec!["bench", "--batch-ms", "0"], "--batch-ms"),
        (vec!["bench", "--device", "x"], "\"x\""),
        (vec!["bench", "--device", "999"], "999"),
        (vec!["bench", "--vectors", "3"], "--vectors: 3 lanes"),
        (vec!["bench", "--kernel-variant", "cuda"], "cuda"),
        // Index 0 is the CPU backend's device in `hashrig devices`.
        (
            vec!["bench", "--backend", "opencl", "--device", "0"],
            "is not a device of backend opencl",
        ),
    ] {
        let out = hashrig(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

/// PoCL and lavapipe are installed by scripts/test.sh: both must be listed.
#[test]
fn devices_lists_every_backend() {
    let out = hashrig(&["--quiet", "devices", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let devices = json_lines(&out);
    for backend in ["cpu", "opencl", "vulkan"] {
        assert!(
            devices.iter().any(|d| d["backend"] == backend),
            "no {backend} device listed: {devices:?}"
        );
    }
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert!(d["kind"] == "cpu" || d["kind"] == "gpu" || d["kind"] == "other");
    }
}

/// `hashrig mine` against the loopback pool: a clean stop after
/// `--duration`, and a JSON summary that agrees with what the pool counted.
#[test]
fn mine_against_a_pool_prints_a_json_summary() {
    let pool = crate::testpool::TestPool::start(0.0003);
    let dir = std::env::temp_dir().join(format!("hashrig-cli-mine-{}", std::process::id()));
    let found = dir.join("found.jsonl");
    let url = pool.url();
    let out = hashrig(&[
        "mine",
        "--pool",
        &url,
        "--user",
        "wallet.cli",
        "--pass",
        "x",
        "--backend",
        "cpu",
        "--cpu-threads",
        "1",
        "--duration",
        "6",
        "--json",
        "--quiet",
        "--found-blocks",
        found.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let summary = lines.last().expect("a summary");
    assert_eq!(summary["event"], "summary");
    // A status event every 5 s before it.
    assert_eq!(lines[0]["event"], "status", "{lines:?}");
    assert!(lines[0]["devices"][0]["hashrate_5s"].as_f64().is_some());
    for key in [
        "accepted",
        "rejected",
        "stale",
        "hw_errors",
        "blocks",
        "hashrate",
    ] {
        assert!(summary.get(key).is_some(), "summary lacks {key}: {summary}");
    }
    let accepted = pool.accepted() as u64;
    assert!(accepted > 0, "no share in 6 s");
    assert_eq!(summary["accepted"], accepted);
    assert_eq!(summary["hw_errors"], 0);
    assert!(summary["hashrate"].as_f64().unwrap() > 0.0);
    assert!(pool.tally(|t| t.invalid.is_empty()));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mine_rejects_bad_pool_addresses_clearly() {
    for (url, expected) in [
        ("stratum+tcp://pool.example.com", "no port"),
        ("http://pool.example.com:3333", "unknown scheme"),
        ("stratum+tcp://pool.example.com:70000", "not a port number"),
        ("stratum2+tcp://pool.example.com:3336", "ends in the pool's authority key"),
        (
            "stratum2+tcp://pool.example.com:3336/9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH73",
            "not base58check",
        ),
    ] {
        let out = hashrig(&["mine", "--pool", url, "--user", "w", "--backend", "cpu"]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = stderr(&out);
        assert!(err.contains(expected) && err.contains(url), "{url}: {err}");
    }
}

#[test]
fn config_check_masks_secrets_and_names_bad_keys() {
    let dir = std::env::temp_dir().join(format!("hashrig-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[[pool]]\nurl = \"stratum+tcp://pool.example.com:3333\"\nuser = \"w.rig\"\npass = \"hunter2\"\n[thermal]\ntemp_target = 80\n",
    )
    .unwrap();
    let out = hashrig(&["config", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("pool.example.com") && !stdout(&out).contains("hunter2"));
    for (text, expected) in [
        ("[thermal]\ntemp_target = 80\ncolour = \"red\"\n", "colour"),
        (
            "[[pool]]\nurl = \"stratum+tcp://nohost\"\nuser = \"w\"\n",
            "pool[0].url",
        ),
        ("[devices]\nbatch_ms = 0\n", "devices.batch_ms"),
        ("[api\nbind = 1\n", "line 1"),
    ] {
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let out = hashrig(&["config", "check", bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(stderr(&out).contains(expected), "{text}: {}", stderr(&out));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn api_keys_are_shown_once_and_stored_hashed() {
    let dir = std::env::temp_dir().join(format!("hashrig-cli-keys-{}", std::process::id()));
    let keys = dir.join("keys.toml");
    let file = keys.to_str().unwrap();
    let out = hashrig(&[
        "api-key",
        "new",
        "--keys-file",
        file,
        "--name",
        "ops",
        "--scope",
        "control",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    assert!(token.starts_with("hrk_") && token.len() == 68, "{token}");
    let stored = std::fs::read_to_string(&keys).unwrap();
    assert!(stored.contains("sha256:") && !stored.contains(&token[4..]));
    let out = hashrig(&[
        "api-key",
        "new",
        "--keys-file",
        file,
        "--name",
        "x",
        "--scope",
        "admin",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("admin"));
    let out = hashrig(&["api-key", "revoke", "--keys-file", file, "--name", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nobody"));
    assert!(
        hashrig(&["api-key", "revoke", "--keys-file", file, "--name", "ops"])
            .status
            .success()
    );
    // The API needs keys.
    let out = hashrig(&["bench", "--backend", "cpu", "--api-bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--api-keys"));
    let _ = std::fs::remove_dir_all(dir);
}

/// Pools from the config file; flags still override it.
#[test]
fn mine_takes_its_pools_from_the_config_file() {
    let pool = crate::testpool::TestPool::start(0.0003);
    let dir = std::env::temp_dir().join(format!("hashrig-cli-mine-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("rig.toml");
    std::fs::write(
        &config,
        format!(
            "found_blocks = {:?}\n[[pool]]\nurl = \"{}\"\nuser = \"wallet.fromfile\"\n[devices]\nbackend = \"cpu\"\ncpu_threads = 1\n",
            dir.join("found.jsonl").to_str().unwrap(),
            pool.url()
        ),
    )
    .unwrap();
    let out = hashrig(&[
        "mine",
        "--config",
        config.to_str().unwrap(),
        "--duration",
        "4",
        "--json",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        pool.tally(|t| t.users.clone()),
        vec!["wallet.fromfile".to_string()]
    );
    assert!(
        json_lines(&out).last().unwrap()["accepted"]
            .as_u64()
            .unwrap()
            > 0
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A session without `XDG_RUNTIME_DIR` (a service, ssh, sudo, a
/// container): the first commands a user runs show hashrig's output only,
/// not Mesa's "XDG_RUNTIME_DIR is invalid or not set" (printed twice per
/// Vulkan instance before the fix).
#[test]
fn no_other_programs_noise_without_a_runtime_dir() {
    for args in [
        vec!["devices"],
        vec!["bench", "--backend", "vulkan", "--seconds", "1"],
    ] {
        let out = crate::common::hashrig_command()
            .args(&args)
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .expect("run hashrig");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("XDG_RUNTIME_DIR"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("llvmpipe"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
}

/// Every row of the README's exit-code table, each from the command and
/// the failure it names.
#[test]
fn every_exit_code_is_the_one_the_readme_gives() {
    use std::io::BufRead;
    // The genesis block's header.
    let header = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";
    let code = |out: &Output| out.status.code();

    // 0: ran to the end.
    let out = hashrig(&[
        "bench",
        "--backend",
        "cpu",
        "--cpu-threads",
        "1",
        "--seconds",
        "1",
    ]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));

    // 1: no pool ever answered; the node never answered a found block.
    let out = hashrig(&[
        "mine",
        "--backend",
        "cpu",
        "--cpu-threads",
        "1",
        "--pool",
        "stratum+tcp://127.0.0.1:1",
        "--user",
        "x",
        "--duration",
        "2",
    ]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let file = std::env::temp_dir().join(format!("hashrig-exit-{}.jsonl", std::process::id()));
    let record = serde_json::json!({"hash": "ab".repeat(32), "block": "00", "height": 9});
    std::fs::write(&file, format!("{record}\n")).unwrap();
    let out = hashrig(&[
        "found-blocks",
        "submit",
        "--rpc-url",
        "http://127.0.0.1:1",
        "--found-blocks",
        file.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));

    // 2: the command line.
    let out = hashrig(&["bench", "--cpu-threads", "many"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    let out = hashrig(&[
        "scan",
        "--backend",
        "cpu",
        "--device",
        "99",
        "--start",
        "0",
        "--count",
        "16",
        "--header",
        header,
    ]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));

    // 3: no device of the backend asked for is installed (no OpenCL
    // runtime): bench, and scan, which opens one device.
    let no_opencl = [
        ("OCL_ICD_VENDORS", "/nonexistent"),
        ("OCL_ICD_FILENAMES", ""),
    ];
    let out = hashrig_with(
        &["bench", "--backend", "opencl", "--seconds", "1"],
        &no_opencl,
    );
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    let out = hashrig_with(
        &[
            "scan",
            "--backend",
            "opencl",
            "--start",
            "0",
            "--count",
            "16",
            "--header",
            header,
        ],
        &no_opencl,
    );
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));

    // 130: a second stop signal while stopping.
    let mut child = crate::common::hashrig_command()
        .args([
            "bench",
            "--backend",
            "cpu",
            "--cpu-threads",
            "1",
            "--seconds",
            "60",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("self-test passed")),
        "bench never started"
    );
    for _ in 0..2 {
        // SAFETY: signals our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::spawn(move || lines.for_each(drop));
    assert_eq!(child.wait().unwrap().code(), Some(130));
}
