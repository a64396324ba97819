//! `hashrig tune` on the PoCL device and on the CPU's paths: it measures,
//! stores a tuning keyed by the device, `bench` and `devices` use and show
//! it, flags override it, and `--reset` forgets it.

use std::path::PathBuf;
use std::process::Output;

use crate::common::hashrig_command_in;

struct Home(PathBuf);

impl Home {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hashrig-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Home(dir)
    }

    fn run(&self, args: &[&str]) -> Output {
        hashrig_command_in(&self.0)
            .args(args)
            .output()
            .expect("hashrig runs")
    }

    fn tuning_file(&self) -> PathBuf {
        self.0.join("data").join("hashrig").join("tuning.json")
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The index `hashrig devices` gives the first OpenCL device (PoCL here).
fn opencl_index(home: &Home) -> String {
    let out = home.run(&["--quiet", "devices", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .find(|d| d["backend"] == "opencl")
        .map(|d| d["index"].to_string())
        .expect("an OpenCL device: scripts/test.sh installs PoCL")
}

/// The first line of `bench --json` on the device `device` selects
/// ([`opencl`] or [`CPU_ONE_THREAD`]), one second, with `extra` flags.
fn bench_line(home: &Home, device: &[&str], extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--quiet", "bench"];
    args.extend_from_slice(device);
    args.extend_from_slice(&["--seconds", "1", "--json"]);
    args.extend_from_slice(extra);
    let out = home.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .expect("a line"),
    )
    .expect("JSON")
}

/// The flags that select OpenCL device `index`.
fn opencl(index: &str) -> [&str; 4] {
    ["--backend", "opencl", "--device", index]
}

/// The flags that select the CPU backend on one thread.
const CPU_ONE_THREAD: [&str; 4] = ["--backend", "cpu", "--cpu-threads", "1"];

#[test]
fn tune_stores_a_tuning_that_bench_uses_and_reset_forgets() {
    let home = Home::new("tune");
    let index = opencl_index(&home);

    // Untuned: bench says so, and mines on the default shape.
    let before = bench_line(&home, &opencl(&index), &[]);
    assert_eq!(before["tuned"], false, "{before}");
    assert_eq!(
        before["shape"]["vectors"], 16,
        "the CPU device default: {before}"
    );

    // Three vector widths at a fixed work-group keep the run short; they
    // are measured in turns and the fastest is stored.
    let out = home.run(&[
        "tune",
        "--backend",
        "opencl",
        "--device",
        &index,
        "--worksize",
        "64",
        "--seconds",
        "4",
    ]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("4 lanes") && log.contains("8 lanes") && log.contains("16 lanes"),
        "{log}"
    );
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.tuning_file()).expect("a tuning file"))
            .expect("JSON");
    let entry = &stored["devices"][0];
    assert_eq!(entry["device"]["backend"], "opencl", "{stored}");
    assert_eq!(
        entry["device"]["kernel"].as_str().map(str::len),
        Some(16),
        "{stored}"
    );
    assert!(
        entry["hashrate"].as_f64().is_some_and(|h| h > 0.0),
        "{stored}"
    );
    let shape = entry["shape"].clone();
    assert_eq!(shape["worksize"], 64);

    // bench uses it and says so; devices shows it.
    let after = bench_line(&home, &opencl(&index), &[]);
    assert_eq!(after["tuned"], true, "{after}");
    assert_eq!(after["shape"], shape, "{after}");
    let out = home.run(&["--quiet", "devices"]);
    assert!(
        text(&out).contains("tuned: generic, work-group 64"),
        "{}",
        text(&out)
    );

    // A flag overrides the stored value it names, and the rest stays.
    let overridden = bench_line(
        &home,
        &opencl(&index),
        &["--kernel-variant", "nvidia", "--vectors", "2"],
    );
    assert_eq!(overridden["shape"]["variant"], "nvidia", "{overridden}");
    assert_eq!(overridden["shape"]["vectors"], 2, "{overridden}");
    assert_eq!(overridden["shape"]["worksize"], 64, "{overridden}");
    assert_eq!(overridden["tuned"], false, "{overridden}");

    // --reset forgets it: bench is back on the defaults.
    let out = home.run(&["tune", "--reset"]);
    assert!(
        out.status.success() && text(&out).contains("1 tunings cleared"),
        "{}",
        text(&out)
    );
    let reset = bench_line(&home, &opencl(&index), &[]);
    assert_eq!(reset["tuned"], false, "{reset}");
    assert_eq!(reset["shape"]["vectors"], 16, "{reset}");
}

/// `tune --backend cpu` measures every path this CPU runs (the paths it
/// lacks are not tried), stores the fastest, and `bench`, `devices` and a
/// `--cpu-path` flag take it from there.
#[test]
fn the_cpu_is_tuned_across_its_paths() {
    let home = Home::new("tune-cpu");
    let out = home.run(&["--quiet", "devices", "--json"]);
    let cpu: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .expect("the CPU is listed first"),
    )
    .expect("JSON");
    // "paths avx512, sha-ni, avx2, scalar": what this CPU runs, best first.
    let listed = cpu["driver"].as_str().expect("the CPU's paths").to_owned();
    let paths: Vec<&str> = listed.trim_start_matches("paths ").split(", ").collect();
    assert_eq!(paths.last(), Some(&"scalar"), "{listed}");
    eprintln!("CPU paths here: {paths:?}");

    let before = bench_line(&home, &CPU_ONE_THREAD, &[]);
    assert_eq!(before["tuned"], false, "{before}");
    assert_eq!(
        before["shape"]["cpu_path"], paths[0],
        "untuned runs the first: {before}"
    );

    let out = home.run(&[
        "tune",
        "--backend",
        "cpu",
        "--cpu-threads",
        "1",
        "--seconds",
        "4",
    ]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    for path in &paths {
        assert!(
            log.contains(&format!("  {path}, ")),
            "{path} not measured: {log}"
        );
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.tuning_file()).expect("a tuning file"))
            .expect("JSON");
    let entry = &stored["devices"][0];
    assert_eq!(entry["device"]["backend"], "cpu", "{stored}");
    let winner = entry["shape"]["cpu_path"]
        .as_str()
        .expect("a path")
        .to_owned();
    assert!(paths.contains(&winner.as_str()), "{stored}");
    // Scalar never wins where a vector path or SHA-NI exists.
    assert!(paths.len() == 1 || winner != "scalar", "{log}");

    let after = bench_line(&home, &CPU_ONE_THREAD, &[]);
    assert_eq!(after["tuned"], true, "{after}");
    assert_eq!(after["shape"]["cpu_path"], winner.as_str(), "{after}");
    let out = home.run(&["--quiet", "devices"]);
    assert!(
        text(&out).contains(&format!("tuned: {winner}, ")),
        "{}",
        text(&out)
    );

    let forced = bench_line(&home, &CPU_ONE_THREAD, &["--cpu-path", "scalar"]);
    assert_eq!(forced["shape"]["cpu_path"], "scalar", "{forced}");
    assert_eq!(forced["tuned"], winner == "scalar", "{forced}");
    assert!(
        forced["hashrate"].as_f64().is_some_and(|h| h > 0.0),
        "{forced}"
    );

    // A path this CPU lacks is refused by name before anything starts.
    if let Some(absent) = ["avx512", "sha-ni", "avx2"]
        .into_iter()
        .find(|p| !paths.contains(p))
    {
        let out = home.run(&["bench", "--backend", "cpu", "--cpu-path", absent]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains(&format!(
                "--cpu-path {absent}: this CPU lacks its instructions"
            )),
            "{}",
            text(&out)
        );
    }
}

/// A damaged tuning file costs the tuning, not the run; `tune` refuses to
/// overwrite it without `--reset`, naming it.
#[test]
fn a_damaged_tuning_file_is_named_and_mining_goes_on() {
    let home = Home::new("tune-damaged");
    let index = opencl_index(&home);
    std::fs::create_dir_all(home.tuning_file().parent().unwrap()).unwrap();
    std::fs::write(
        home.tuning_file(),
        "{\"version\": 1, \"devices\": [ {\"shape\": 7",
    )
    .unwrap();
    let out = home.run(&[
        "bench",
        "--backend",
        "opencl",
        "--device",
        &index,
        "--seconds",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("tuning.json") && text(&out).contains("tune --reset"),
        "{}",
        text(&out)
    );
    let out = home.run(&[
        "tune",
        "--backend",
        "opencl",
        "--device",
        &index,
        "--seconds",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("tuning.json"), "{}", text(&out));
}

/// `--tuning-file` (or the config's `devices.tuning_file`) names the file
/// for every command: what `tune` stored there is what `bench`, `devices`
/// and `mine` read, and the default file is left alone.
#[test]
fn a_tuning_file_named_once_serves_every_command() {
    let home = Home::new("tune-file");
    let index = opencl_index(&home);
    let file = home.0.join("rig-tuning.json");
    let named = file.to_str().unwrap();
    let out = home.run(&[
        "tune",
        "--backend",
        "opencl",
        "--device",
        &index,
        "--worksize",
        "64",
        "--vectors",
        "8",
        "--seconds",
        "1",
        "--tuning-file",
        named,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(file.exists(), "tune wrote no {named}: {}", text(&out));
    assert!(!home.tuning_file().exists(), "tune wrote the default file");

    let flagged = bench_line(&home, &opencl(&index), &["--tuning-file", named]);
    assert_eq!(flagged["tuned"], true, "{flagged}");
    assert_eq!(flagged["shape"]["worksize"], 64, "{flagged}");
    let unnamed = bench_line(&home, &opencl(&index), &[]);
    assert_eq!(unnamed["tuned"], false, "the default file: {unnamed}");

    let config = home.0.join("config.toml");
    std::fs::write(&config, format!("[devices]\ntuning_file = {named:?}\n")).unwrap();
    let configured = bench_line(
        &home,
        &opencl(&index),
        &["--config", config.to_str().unwrap()],
    );
    assert_eq!(configured["tuned"], true, "{configured}");
    let out = home.run(&["--quiet", "devices", "--tuning-file", named]);
    assert!(
        text(&out).contains("tuned: generic, work-group 64"),
        "{}",
        text(&out)
    );
}

/// A kernel cache entry replaced by a link to `/dev/zero` (or a FIFO) is
/// not read: the program is built again and the run goes on.
#[test]
fn a_kernel_cache_entry_that_is_not_a_regular_file_is_rebuilt() {
    let home = Home::new("kernel-cache");
    let index = opencl_index(&home);
    let first = bench_line(&home, &opencl(&index), &[]);
    assert!(first["hashrate"].as_f64().unwrap_or(0.0) > 0.0, "{first}");
    let cache = home.0.join("cache").join("opencl");
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}", cache.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    assert!(!entries.is_empty(), "no cache entry in {}", cache.display());
    for (i, entry) in entries.iter().enumerate() {
        std::fs::remove_file(entry).unwrap();
        if i % 2 == 0 {
            std::os::unix::fs::symlink("/dev/zero", entry).unwrap();
        } else {
            let path = std::ffi::CString::new(entry.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        }
    }
    // bench_line fails the test if the run fails; a read of either would
    // never end, and the test binary's own timeout would say so.
    let again = bench_line(&home, &opencl(&index), &[]);
    assert!(again["hashrate"].as_f64().unwrap_or(0.0) > 0.0, "{again}");
}
