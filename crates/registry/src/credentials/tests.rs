//! Credentials from config files and helpers, and what `store` and `erase`
//! leave in the files. Helpers here are small shell scripts on a private
//! PATH; the real docker-credential-pass is driven by tests/it/login.rs.

use std::os::unix::fs::PermissionsExt;

use super::*;

#[test]
fn credentials_from_docker_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    assert_eq!(Credentials::lookup(&path, "docker.io").unwrap(), None);
    let auth = base64::engine::general_purpose::STANDARD.encode("me:pa:ss");
    std::fs::write(
        &path,
        format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},
               "127.0.0.1:5000":{{"username":"u","password":"p"}}}}}}"#
        ),
    )
    .unwrap();
    let hub = Credentials::lookup(&path, "registry-1.docker.io")
        .unwrap()
        .unwrap();
    assert_eq!(hub.username, "me");
    assert_eq!(hub.password.expose(), "pa:ss");
    assert_eq!(
        hub.basic_header(),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("me:pa:ss")
        )
    );
    assert!(!format!("{hub:?}").contains("pa:ss"));
    let local = Credentials::lookup(&path, "127.0.0.1:5000")
        .unwrap()
        .unwrap();
    assert_eq!(
        (local.username.as_str(), local.password.expose()),
        ("u", "p")
    );
    assert_eq!(Credentials::lookup(&path, "ghcr.io").unwrap(), None);

    std::fs::write(&path, r#"{"auths":{"ghcr.io":{"auth":"%%%"}}}"#).unwrap();
    let err = Credentials::lookup(&path, "ghcr.io").unwrap_err();
    assert!(err.to_string().contains("not base64"), "{err}");
}

#[test]
fn server_keys_as_docker_login_writes_them() {
    for hub in [
        "",
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "https://index.docker.io/v1/",
        "https://registry-1.docker.io/v2/",
    ] {
        assert_eq!(server_key(hub), DOCKER_HUB_KEY, "{hub:?}");
    }
    assert_eq!(server_key("127.0.0.1:5000"), "127.0.0.1:5000");
    assert_eq!(server_key("https://ghcr.io/v2/"), "ghcr.io");
    assert_eq!(server_key("http://Registry.Lan:5000"), "Registry.Lan:5000");
}

#[test]
fn identity_tokens_and_keys_with_schemes_or_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("me:");
    std::fs::write(
        &path,
        format!(
            r#"{{"auths":{{"https://ghcr.io/v2/":{{"auth":"{auth}","identitytoken":"refresh-1"}},
               "quay.io":{{}}}}}}"#
        ),
    )
    .unwrap();
    let found = Credentials::lookup(&path, "ghcr.io").unwrap().unwrap();
    assert_eq!(found.username, "me");
    assert_eq!(found.password.expose(), "");
    assert_eq!(
        found.identity_token.as_ref().map(Secret::expose),
        Some("refresh-1")
    );
    assert!(!format!("{found:?}").contains("refresh-1"));
    // An empty entry is a login recorded for a helper: no credentials.
    assert_eq!(Credentials::lookup(&path, "quay.io").unwrap(), None);
}

/// Writes `docker-credential-NAME` into `bin`: a helper keeping its
/// credentials as files in `bin/NAME.d`, speaking Docker's protocol.
fn script_helper(bin: &Path, name: &str) {
    let store = bin.join(format!("{name}.d"));
    std::fs::create_dir_all(&store).unwrap();
    let script = format!(
        r#"#!/bin/sh
set -e
store={store}
case "$1" in
  get) url=$(cat); f="$store/$(echo "$url" | tr '/:' '__')"
       if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  store) json=$(cat); url=$(echo "$json" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/')
         echo "$json" > "$store/$(echo "$url" | tr '/:' '__')" ;;
  erase) url=$(cat); f="$store/$(echo "$url" | tr '/:' '__')"
         if [ -f "$f" ]; then rm "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  *) echo "unknown action $1"; exit 1 ;;
esac
"#,
        store = store.display()
    );
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `bin` first, then the process's PATH.
fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut paths = vec![bin.to_owned()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

#[test]
fn store_writes_config_json_atomically_with_mode_0600_keeping_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker/config.json");
    let store = CredentialStore {
        docker_config: Some(path.clone()),
        auth_file: None,
        helper_path: None,
    };
    // No file yet: created with its directory.
    store
        .store("docker.io", &Credentials::new("me", "s3cret"))
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (found, source) = store.get("index.docker.io").unwrap().unwrap();
    assert_eq!(
        (found.username.as_str(), found.password.expose()),
        ("me", "s3cret")
    );
    assert_eq!(source, Source::File(path.clone()));

    std::fs::write(
        &path,
        r#"{"auths":{"index.docker.io":{"auth":"b2xkOm9sZA=="}},"psFormat":"table {{.ID}}","proxies":{"default":{"httpProxy":"http://p:3128"}}}"#,
    )
    .unwrap();
    let with_token = Credentials {
        identity_token: Some(Secret::new("refresh-9")),
        ..Credentials::new("me", "ignored")
    };
    store.store("", &with_token).unwrap();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written["psFormat"], "table {{.ID}}");
    assert_eq!(written["proxies"]["default"]["httpProxy"], "http://p:3128");
    // One entry for Docker Hub, under Docker's key, the old spelling gone.
    assert_eq!(
        written["auths"],
        serde_json::json!({DOCKER_HUB_KEY: {"auth": "bWU6", "identitytoken": "refresh-9"}})
    );
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["config.json"]);

    assert_eq!(
        store.erase("docker.io").unwrap(),
        [Source::File(path.clone())]
    );
    assert_eq!(store.get("docker.io").unwrap(), None);
    assert!(store.erase("docker.io").unwrap().is_empty());
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written["psFormat"], "table {{.ID}}");
}

#[test]
fn helpers_from_creds_store_and_cred_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    script_helper(&bin, "every");
    script_helper(&bin, "one");
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        r#"{"credsStore":"every","credHelpers":{"registry.lan:5000":"one"},
            "auths":{"registry.lan:5000":{"auth":"ZmlsZTpmaWxl"}}}"#,
    )
    .unwrap();
    let store = CredentialStore {
        docker_config: Some(path.clone()),
        auth_file: None,
        helper_path: Some(path_with(&bin)),
    };
    {
        // The helper's answer is final: the file's `auth` is not used.
        assert_eq!(store.get("registry.lan:5000").unwrap(), None);
        assert_eq!(
            store
                .store("registry.lan:5000", &Credentials::new("u1", "p1"))
                .unwrap(),
            Source::Helper("one".into())
        );
        store
            .store("docker.io", &Credentials::new("u2", "p2"))
            .unwrap();
        let token = Credentials {
            identity_token: Some(Secret::new("idt")),
            ..Credentials::new("u3", "")
        };
        store.store("ghcr.io", &token).unwrap();

        let (lan, source) = store.get("registry.lan:5000").unwrap().unwrap();
        assert_eq!((lan.username.as_str(), lan.password.expose()), ("u1", "p1"));
        assert_eq!(source, Source::Helper("one".into()));
        let (hub, source) = store.get("registry-1.docker.io").unwrap().unwrap();
        assert_eq!((hub.username.as_str(), hub.password.expose()), ("u2", "p2"));
        assert_eq!(source, Source::Helper("every".into()));
        let (ghcr, _) = store.get("ghcr.io").unwrap().unwrap();
        assert_eq!(
            ghcr.identity_token.as_ref().map(Secret::expose),
            Some("idt")
        );
    }
    // The helpers got Docker's keys; the file only records the logins.
    assert!(bin.join("one.d/registry.lan_5000").is_file());
    assert!(bin.join("every.d/https___index.docker.io_v1_").is_file());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("p1") && !text.contains("p2") && !text.contains("idt"));
    let written: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(written["auths"]["registry.lan:5000"], serde_json::json!({}));
    assert_eq!(written["auths"][DOCKER_HUB_KEY], serde_json::json!({}));

    {
        let erased = store.erase("registry.lan:5000").unwrap();
        assert_eq!(
            erased,
            [Source::Helper("one".into()), Source::File(path.clone())]
        );
        assert!(!bin.join("one.d/registry.lan_5000").exists());
        assert_eq!(store.get("registry.lan:5000").unwrap(), None);
    }
}

#[test]
fn podman_auth_json_comes_after_docker_config() {
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("config.json");
    let podman = dir.path().join("auth.json");
    std::fs::write(&docker, r#"{"auths":{"a.example":{"auth":"ZDpk"}}}"#).unwrap();
    std::fs::write(
        &podman,
        r#"{"auths":{"a.example":{"auth":"cDpw"},"b.example":{"auth":"cDpw"}}}"#,
    )
    .unwrap();
    let store = CredentialStore {
        docker_config: Some(docker.clone()),
        auth_file: Some(podman.clone()),
        helper_path: None,
    };
    let (a, source) = store.get("a.example").unwrap().unwrap();
    assert_eq!(
        (a.username.as_str(), source),
        ("d", Source::File(docker.clone()))
    );
    let (b, source) = store.get("b.example").unwrap().unwrap();
    assert_eq!(
        (b.username.as_str(), source),
        ("p", Source::File(podman.clone()))
    );
    // Logging out removes the registry from both.
    assert_eq!(
        store.erase("a.example").unwrap(),
        [Source::File(docker), Source::File(podman)]
    );
    assert_eq!(store.get("a.example").unwrap(), None);
}

#[test]
fn a_missing_or_failing_helper_is_a_clear_error_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"credsStore":"hoist-test-absent"}"#).unwrap();
    let err = Credentials::lookup(&path, "docker.io")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("docker-credential-hoist-test-absent") && err.contains("not installed"),
        "{err}"
    );
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let failing = bin.join("docker-credential-broken");
    std::fs::write(
        &failing,
        // It says why, and quotes its input back, secret included.
        "#!/bin/sh\necho \"keyring is locked, cannot keep $(cat)\"\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&path, r#"{"credsStore":"broken"}"#).unwrap();
    let store = CredentialStore {
        docker_config: Some(path.clone()),
        auth_file: None,
        helper_path: Some(path_with(&bin)),
    };
    let before = std::fs::read(&path).unwrap();
    let err = store
        .store("docker.io", &Credentials::new("u", "hunter2"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("keyring is locked") && err.contains("store"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    // A failed store leaves the file as it was.
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_mounted_dockerconfigjson_secret_serves_as_the_config() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(config_in(dir.path()), dir.path().join("config.json"));
    std::fs::write(
        dir.path().join(".dockerconfigjson"),
        r#"{"auths":{"registry.example:5000":{"username":"ci","password":"p"}}}"#,
    )
    .unwrap();
    let path = config_in(dir.path());
    assert_eq!(path, dir.path().join(".dockerconfigjson"));
    let found = Credentials::lookup(&path, "registry.example:5000")
        .unwrap()
        .unwrap();
    assert_eq!(found.username, "ci");
    // A config.json beside it wins: Docker reads only that.
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    assert_eq!(config_in(dir.path()), dir.path().join("config.json"));
}

#[test]
fn a_dockerconfigjson_left_base64_encoded_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".dockerconfigjson");
    let document = r#"{"auths":{"registry.example:5000":{"username":"ci","password":"p"}}}"#;
    let encoded = base64::engine::general_purpose::STANDARD.encode(document);
    std::fs::write(&path, &encoded).unwrap();
    let found = Credentials::lookup(&path, "registry.example:5000")
        .unwrap()
        .unwrap();
    assert_eq!(found.password.expose(), "p");
    // Only that file name: a config.json holding base64 is an error.
    let config = dir.path().join("config.json");
    std::fs::write(&config, &encoded).unwrap();
    assert!(Credentials::lookup(&config, "registry.example:5000").is_err());
}
