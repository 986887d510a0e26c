//! `hoist login` and `hoist logout` against real registries: a registry:2
//! with htpasswd basic auth (bcrypt, apache2-utils), Debian's
//! docker-credential-pass over `pass` and a throwaway GPG key, and what
//! builds pulling `FROM` those registries do with the stored credentials.
//! No password may appear on any output.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use serde_json::Value;

use crate::support::{Registry, copy_busybox_to, require, run_ok};

const PASSWORD: &str = "Tr0ub4dor&3-horse";

/// A private HOME for hoist and the tools it calls: Docker's config,
/// podman's runtime directory, hoist's config directory and a store.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["docker", "run", "config", "store"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Home { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `$DOCKER_CONFIG/config.json`.
    pub fn docker_config(&self) -> PathBuf {
        self.path().join("docker/config.json")
    }

    /// `hoist` with this home's environment.
    pub fn hoist(&self) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("hoist"));
        cmd.env("HOME", self.path())
            .env("DOCKER_CONFIG", self.path().join("docker"))
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("HOIST_STORE", self.path().join("store"))
            .env("GNUPGHOME", self.path().join("gnupg"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("HOIST_CONFIG");
        cmd
    }

    /// `hoist login REGISTRY -u USER --password-stdin` with `password`.
    pub fn login(&self, registry: &str, user: &str, password: &str) -> Output {
        let mut cmd = self.hoist();
        cmd.args(["login", registry, "-u", user, "--password-stdin"]);
        with_stdin(cmd, &format!("{password}\n"))
    }

    pub fn logout(&self, registry: &str) -> Output {
        self.hoist().args(["logout", registry]).output().unwrap()
    }

    /// Builds `FROM image` plus a COPY, pulling the base image again.
    pub fn build_from(&self, image: &str) -> Output {
        let context = tempfile::tempdir().unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            format!("FROM {image}\nCOPY hello /hello\n"),
        )
        .unwrap();
        std::fs::write(context.path().join("hello"), "hi\n").unwrap();
        self.hoist()
            .args(["build", "--pull", "-q", "-t", "probe"])
            .arg(context.path())
            .output()
            .unwrap()
    }
}

pub fn with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading its input closes the pipe.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

pub fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts `output` succeeded and shows none of `secrets`.
pub fn assert_ok_without(output: &Output, secrets: &[&str]) {
    assert!(output.status.success(), "{}", text(output));
    assert_no_secret(output, secrets);
}

pub fn assert_no_secret(output: &Output, secrets: &[&str]) {
    let all = text(output);
    for secret in secrets {
        assert!(!all.contains(secret), "a secret was printed:\n{all}");
    }
}

/// A registry:2 asking for basic auth, users from a bcrypt htpasswd file,
/// holding library/busybox:latest.
fn htpasswd_registry(dir: &Path, users: &[(&str, &str)]) -> Registry {
    let htpasswd = require("htpasswd", "apache2-utils");
    let mut lines = String::new();
    for (user, password) in users {
        lines.push_str(&run_ok(
            Command::new(&htpasswd).args(["-Bbn", user, password]),
        ));
    }
    let file = dir.join("htpasswd");
    std::fs::write(&file, lines.trim_end().to_owned() + "\n").unwrap();
    let registry = Registry::start_with(&format!(
        "auth: {{htpasswd: {{realm: hoist-test, path: {}}}}}",
        file.display()
    ));
    let (user, password) = users[0];
    copy_busybox_to(registry.addr(), Some(&format!("{user}:{password}")));
    registry
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn htpasswd_login_pull_wrong_password_and_logout() {
    let home = Home::new();
    let registry = htpasswd_registry(home.path(), &[("alice", PASSWORD)]);
    let addr = registry.addr();
    let image = format!("{addr}/library/busybox:latest");

    // Not logged in: the pull is refused, naming the registry, the
    // repository and the remedy.
    let refused = home.build_from(&image);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "access to library/busybox was refused by registry {addr}"
        )) && stderr.contains(&format!("hoist login {addr}")),
        "{stderr}"
    );

    // A config with other registries and keys of its own.
    let config = home.docker_config();
    let other = base64::engine::general_purpose::STANDARD.encode("bob:elsewhere");
    std::fs::write(
        &config,
        format!(
            "{{\"auths\":{{\"other.example\":{{\"auth\":\"{other}\"}}}},\"detachKeys\":\"ctrl-x\"}}"
        ),
    )
    .unwrap();
    let before = std::fs::read(&config).unwrap();

    // A wrong password: a clear error, exit 1, the file untouched.
    let wrong = home.login(addr, "alice", "not-the-password");
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains(&format!(
            "registry {addr} refused the user name or password"
        )),
        "{stderr}"
    );
    assert_no_secret(&wrong, &["not-the-password", PASSWORD]);
    assert_eq!(std::fs::read(&config).unwrap(), before);

    // The right one: stored in config.json (0600), other keys kept.
    let ok = home.login(addr, "alice", PASSWORD);
    assert_ok_without(&ok, &[PASSWORD]);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "Login Succeeded\n");
    let written = read_json(&config);
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"));
    assert_eq!(written["auths"][addr]["auth"], expected.as_str());
    assert_eq!(written["auths"]["other.example"]["auth"], other.as_str());
    assert_eq!(written["detachKeys"], "ctrl-x");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // `hoist login` alone tries the stored credentials first, as Docker.
    let again = with_stdin(
        {
            let mut cmd = home.hoist();
            cmd.args(["login", addr]);
            cmd
        },
        "",
    );
    assert_ok_without(&again, &[PASSWORD]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("Authenticating with existing credentials"),
        "{}",
        text(&again)
    );

    // FROM the registry now pulls with those credentials.
    let built = home.build_from(&image);
    assert_ok_without(&built, &[PASSWORD]);
    // And a push sends them too: its blobs go up at once, each meeting its
    // first 401 before any of them has learnt the registry wants basic
    // credentials.
    let pushed = home
        .hoist()
        .args(["push", "probe", &format!("{addr}/team/probe:v1")])
        .output()
        .unwrap();
    assert_ok_without(&pushed, &[PASSWORD]);
    assert!(
        String::from_utf8_lossy(&pushed.stdout).starts_with(&format!("{addr}/team/probe@sha256:")),
        "{}",
        text(&pushed)
    );

    // Logging out removes only this registry; the pull is refused again.
    let out = home.logout(addr);
    assert_ok_without(&out, &[PASSWORD]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Removing login credentials for {addr}\n")
    );
    let written = read_json(&config);
    assert!(written["auths"].get(addr).is_none(), "{written}");
    assert_eq!(written["auths"]["other.example"]["auth"], other.as_str());
    assert_eq!(written["detachKeys"], "ctrl-x");
    assert_eq!(home.build_from(&image).status.code(), Some(1));
    let again = home.logout(addr);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        format!("Not logged in to {addr}\n")
    );
}

#[test]
fn login_refuses_missing_user_names_and_prompts_only_on_a_terminal() {
    let home = Home::new();
    let out = with_stdin(
        {
            let mut cmd = home.hoist();
            cmd.args(["login", "127.0.0.1:1", "--password-stdin"]);
            cmd
        },
        "secret-on-stdin\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--password-stdin needs the user name"),
        "{}",
        text(&out)
    );
    // No terminal to prompt on: say what to pass instead.
    let out = with_stdin(
        {
            let mut cmd = home.hoist();
            cmd.args(["login", "127.0.0.1:1", "-u", "alice"]);
            cmd
        },
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stdin is not a terminal"),
        "{}",
        text(&out)
    );
    assert!(!home.docker_config().exists());
}

/// The interactive prompt on a real terminal (a pty from util-linux's
/// `script`): the password typed is not echoed, and works.
#[test]
fn the_password_prompt_hides_what_is_typed() {
    use std::io::Read;
    let home = Home::new();
    let registry = htpasswd_registry(home.path(), &[("alice", PASSWORD)]);
    let hoist = home.hoist();
    let mut line = format!("{:?}", hoist.get_program());
    line.push_str(&format!(" login {} -u alice", registry.addr()));
    let mut cmd = Command::new(require("script", "bsdutils"));
    cmd.args(["-qec", &line, "/dev/null"]);
    for (key, value) in hoist.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Type the password only once the prompt is there (echo is off by
    // then): what the terminal shows is read until the prompt appears.
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("Password: ") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    let shown = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{shown}");
    assert!(shown.contains("Login Succeeded"), "{shown}");
    assert!(
        !shown.contains(PASSWORD),
        "the password was echoed:\n{shown}"
    );
    let written = read_json(&home.docker_config());
    assert!(written["auths"][registry.addr()]["auth"].is_string());
}

/// A `pass` store with a throwaway GPG key (no passphrase) in `home`, for
/// docker-credential-pass. The GPG agent it starts is stopped on drop.
struct PassStore {
    gnupg: PathBuf,
    home: PathBuf,
}

impl PassStore {
    fn init(home: &Path) -> PassStore {
        require("docker-credential-pass", "golang-docker-credential-helpers");
        let pass = require("pass", "pass");
        let gpg = require("gpg", "gnupg");
        let gnupg = home.join("gnupg");
        std::fs::create_dir_all(&gnupg).unwrap();
        std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
        let store = PassStore {
            gnupg: gnupg.clone(),
            home: home.to_owned(),
        };
        run_ok(
            Command::new(gpg)
                .env("GNUPGHOME", &gnupg)
                .args(["--batch", "--passphrase", "", "--quick-gen-key"])
                .args([
                    "hoist test <test@hoist.invalid>",
                    "default",
                    "default",
                    "never",
                ]),
        );
        run_ok(
            Command::new(pass)
                .env("HOME", home)
                .env("GNUPGHOME", &gnupg)
                .args(["init", "test@hoist.invalid"]),
        );
        store
    }

    /// `docker-credential-pass list`: server URL -> user name.
    fn list(&self) -> Value {
        let out = run_ok(
            Command::new("docker-credential-pass")
                .env("HOME", &self.home)
                .env("GNUPGHOME", &self.gnupg)
                .arg("list"),
        );
        serde_json::from_str(&out).unwrap()
    }
}

impl Drop for PassStore {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

#[test]
fn docker_credential_pass_gets_stores_and_erases() {
    let home = Home::new();
    let pass = PassStore::init(home.path());
    let registry = htpasswd_registry(home.path(), &[("alice", PASSWORD)]);
    let addr = registry.addr();
    let config = home.docker_config();
    std::fs::write(&config, r#"{"credsStore":"pass"}"#).unwrap();

    // store: the password goes to pass, the file only records the login.
    let ok = home.login(addr, "alice", PASSWORD);
    assert_ok_without(&ok, &[PASSWORD]);
    assert!(
        !String::from_utf8_lossy(&ok.stderr).contains("unencrypted"),
        "{}",
        text(&ok)
    );
    assert_eq!(pass.list()[addr], "alice");
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(!written.contains(PASSWORD), "{written}");
    let written: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(written["auths"][addr], serde_json::json!({}));
    assert_eq!(written["credsStore"], "pass");

    // get: FROM pulls with what pass holds.
    let built = home.build_from(&format!("{addr}/library/busybox:latest"));
    assert_ok_without(&built, &[PASSWORD]);

    // erase: gone from pass and from the file.
    let out = home.logout(addr);
    assert_ok_without(&out, &[PASSWORD]);
    assert!(pass.list().get(addr).is_none(), "{}", pass.list());
    assert!(read_json(&config)["auths"].get(addr).is_none());
    assert_eq!(
        String::from_utf8_lossy(&home.logout(addr).stdout),
        format!("Not logged in to {addr}\n")
    );
}
