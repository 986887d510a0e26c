//! Registry settings against real registries: a registry:2 serving HTTPS
//! with a certificate from a private CA made with openssl, which hoist
//! refuses until the CA is trusted (`--ca-cert`, or the config file, for
//! every registry or for that one); and the config file's mirrors.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::login::{Home, text};
use crate::support::{Registry, copy_busybox_to};

/// A CA and a server certificate for 127.0.0.1 it signed; returns the
/// CA's PEM, the server's certificate and key.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    crate::support::signed_certificate(
        dir,
        "/CN=hoist test registry CA",
        "server",
        "/CN=127.0.0.1",
        Some("IP:127.0.0.1"),
    )
}

/// Builds `FROM busybox` with Docker Hub mirrored by `mirror` over HTTPS.
fn build(home: &Home, mirror: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let context = home.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nCOPY f /f\n").unwrap();
    std::fs::write(context.join("f"), "f\n").unwrap();
    let mut cmd = home.hoist();
    cmd.args(["build", "-q", "--pull", "--registry-mirror"])
        .arg(format!("docker.io=https://{mirror}"))
        .args(args)
        .arg(&context);
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

#[test]
fn a_private_ca_is_trusted_from_the_flag_or_the_config_file_only() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(certs.path());
    let registry = Registry::start_tls(&cert, &key);
    let addr = registry.addr();
    copy_busybox_to(addr, None);
    let home = Home::new();

    // Not trusted: a TLS error naming the registry.
    let refused = build(&home, addr, &[], &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains(&format!("TLS with registry {addr} failed")),
        "{}",
        text(&refused)
    );

    // --ca-cert, for every registry and for this one.
    let ca_arg = ca.display().to_string();
    let ok = build(&home, addr, &["--ca-cert", &ca_arg], &[]);
    assert!(ok.status.success(), "{}", text(&ok));
    let ok = build(
        &home,
        addr,
        &["--ca-cert", &format!("{addr}={ca_arg}")],
        &[],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    // A bundle for another registry does not count for this one.
    let other = build(
        &home,
        addr,
        &["--ca-cert", &format!("127.0.0.2={ca_arg}")],
        &[],
    );
    assert_eq!(other.status.code(), Some(1), "{}", text(&other));

    // The config file: a bundle for all, then one for the host (any port),
    // relative to the file's directory.
    let config = certs.path().join("hoist.toml");
    std::fs::write(&config, "ca-certs = [\"ca.pem\"]\n").unwrap();
    let ok = build(&home, addr, &[], &[("HOIST_CONFIG", &config)]);
    assert!(ok.status.success(), "{}", text(&ok));
    std::fs::write(
        &config,
        "[registries.\"127.0.0.1\"]\nca-cert = \"ca.pem\"\n",
    )
    .unwrap();
    let ok = build(&home, addr, &[], &[("HOIST_CONFIG", &config)]);
    assert!(ok.status.success(), "{}", text(&ok));

    // A malformed file stops the build with FILE:LINE:COLUMN and a hint.
    std::fs::write(&config, "ca-certs = [\"ca.pem\"]\nca-cert = 1\n").unwrap();
    let bad = build(&home, addr, &[], &[("HOIST_CONFIG", &config)]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:2:1: unknown field `ca-cert`",
            config.display()
        )) && stderr.contains("hint: "),
        "{stderr}"
    );
}

/// The config file's mirrors serve `FROM busybox`, and a flag for the same
/// registry replaces them.
#[test]
fn the_config_file_s_mirrors_serve_base_images_and_flags_override_them() {
    let registry = Registry::shared();
    let home = Home::new();
    let context = home.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), "FROM busybox\nCOPY f /f\n").unwrap();
    std::fs::write(context.join("f"), "f\n").unwrap();
    let config = home.path().join("config/hoist/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    // Unquoted, as people write it: TOML's dotted key, read back as docker.io.
    std::fs::write(
        &config,
        format!("[mirrors]\ndocker.io = [\"{}\"]\n", registry.addr()),
    )
    .unwrap();
    let build = |args: &[&str]| {
        home.hoist()
            .args(["build", "-q", "--pull"])
            .args(args)
            .arg(&context)
            .output()
            .unwrap()
    };
    // Found at $XDG_CONFIG_HOME/hoist/config.toml.
    let ok = build(&[]);
    assert!(ok.status.success(), "{}", text(&ok));
    // A flag mirror for docker.io replaces the file's: nothing listens there.
    let closed = format!("127.0.0.1:{}", crate::support::free_port());
    let out = build(&["--registry-mirror", &format!("docker.io={closed}")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&closed) && !stderr.contains(registry.addr()),
        "{stderr}"
    );
}
