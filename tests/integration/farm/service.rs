//! Running hashrig as a service: the systemd unit verified by systemd's
//! own checker, the Dockerfile linted by hadolint and held to the crate's
//! toolchain and to packages Debian has.

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/systemd/hashrig.service"
);
const DOCKERFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile");

fn output_of(command: &mut std::process::Command) -> (bool, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_systemd_unit_verifies_and_keeps_the_gpus_reachable() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    // What the issue asks of it, and what must not creep in.
    for needed in [
        "Restart=on-failure",
        "User=hashrig",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DeviceAllow=char-drm rw",
        "DeviceAllow=char-kfd rw",
        "DeviceAllow=char-nvidia-frontend rw",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    for hides_the_gpus in ["\nPrivateDevices=yes", "\nMemoryDenyWriteExecute=yes"] {
        assert!(!unit.contains(hides_the_gpus), "{hides_the_gpus}");
    }
    // systemd checks the binary it runs: the one under test, in a copy.
    let dir = std::env::temp_dir().join(format!("hashrig-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("hashrig.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/hashrig", env!("CARGO_BIN_EXE_hashrig")),
    )
    .unwrap();
    let (ok, said) = output_of(
        std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy),
    );
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    // Its command line is one hashrig takes.
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/hashrig "))
        .unwrap();
    let (ok, said) = output_of(
        std::process::Command::new(env!("CARGO_BIN_EXE_hashrig"))
            .args(exec.split_whitespace())
            .arg("--help"),
    );
    assert!(ok, "{exec}: {said}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_dockerfile_lints_clean_and_builds_with_the_crates_toolchain() {
    let hadolint = std::env::var("HASHRIG_HADOLINT").expect(
        "HASHRIG_HADOLINT is not set: run the tests through scripts/test.sh, \
         or eval \"$(bash scripts/farm-tools.sh)\" first",
    );
    let (ok, said) = output_of(std::process::Command::new(hadolint).arg(DOCKERFILE));
    assert!(ok, "hadolint: {said}");
    let dockerfile = std::fs::read_to_string(DOCKERFILE).unwrap();
    // The build stage's Rust is at least the crate's rust-version.
    let image = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .and_then(|l| l.split('-').next())
        .expect("a rust build stage");
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let needed = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(
        version(image) >= version(needed),
        "rust:{image} < rust-version {needed}"
    );
    assert!(
        dockerfile.contains("--locked"),
        "the image builds what Cargo.lock says"
    );
    // The runtime stage installs packages Debian bookworm has (this
    // machine's release is the image's).
    let packages: Vec<&str> = dockerfile
        .split("--no-install-recommends")
        .nth(1)
        .unwrap()
        .split("&&")
        .next()
        .unwrap()
        .split_whitespace()
        .filter(|w| *w != "\\")
        .collect();
    assert!(packages.contains(&"mesa-vulkan-drivers"), "{packages:?}");
    let (ok, said) = output_of(
        std::process::Command::new("apt-cache")
            .arg("show")
            .args(&packages),
    );
    assert!(ok, "apt-cache show {packages:?}: {said}");
}
