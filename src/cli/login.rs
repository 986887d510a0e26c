//! `hoist login` and `hoist logout`: Docker's commands, on the same files.

use super::emit;
use super::registry::RegistryArgs;
use anyhow::{Context, bail};
use clap::Args;
use hoist_registry::credentials::{self, Source};
use hoist_registry::{Client, CredentialStore, Credentials};
use std::io::{BufRead, IsTerminal, Read, Write};

/// Log in to a registry, as `docker login` does.
///
/// The credentials are checked against the registry before anything is saved.
/// They go to the credential helper the Docker config names (credHelpers,
/// credsStore), otherwise into ~/.docker/config.json ($DOCKER_CONFIG) with
/// mode 0600. Without -u or a password, hoist first tries the credentials
/// already stored, then prompts (the password is not echoed).
///
/// Examples:
///   hoist login -u alice                 # Docker Hub, password prompted
///   echo "$TOKEN" | hoist login -u ci --password-stdin registry.example:5000
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LoginArgs {
    /// The registry (`host[:port]`); Docker Hub when omitted.
    pub registry: Option<String>,
    /// The user name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// The password (visible to other users in the process list: prefer
    /// --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from stdin (needs --username).
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry_flags: RegistryArgs,
}

/// Log out from a registry, as `docker logout` does.
///
/// Its credentials are removed from wherever hoist reads them: the credential
/// helper the Docker config names, ~/.docker/config.json ($DOCKER_CONFIG) and
/// podman's auth.json.
///
/// Examples:
///   hoist logout                         # Docker Hub
///   hoist logout registry.example:5000
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LogoutArgs {
    /// The registry (`host[:port]`); Docker Hub when omitted.
    pub registry: Option<String>,
}

/// The host the registry API is at: Docker Hub's API is
/// registry-1.docker.io, whatever name it was given by.
fn api_host(key: &str) -> &str {
    if key == credentials::DOCKER_HUB_KEY {
        "registry-1.docker.io"
    } else {
        key
    }
}

pub fn login(args: &LoginArgs) -> anyhow::Result<i32> {
    let key = credentials::server_key(args.registry.as_deref().unwrap_or(""));
    if args.password_stdin && args.username.is_none() {
        bail!("--password-stdin needs the user name: pass it with --username (-u)");
    }
    if args.password.is_some() {
        eprintln!(
            "WARNING! Using --password on the command line is insecure: use --password-stdin."
        );
    }
    let options = args.registry_flags.client_options()?;
    let store = CredentialStore::from_env();
    let client = Client::new(options);
    // `https://host` or `http://host` chooses the scheme, as with Docker.
    let given = args.registry.as_deref().unwrap_or("");
    let endpoint = match given.split_once("://") {
        Some((scheme, _)) if key != credentials::DOCKER_HUB_KEY => {
            client.endpoint(&format!("{scheme}://{key}"))
        }
        _ => client.endpoint(api_host(&key)),
    };

    // As Docker: with neither a user name nor a password given, the stored
    // credentials are tried first.
    let stored = store.get(&key).ok().flatten();
    if args.username.is_none()
        && args.password.is_none()
        && !args.password_stdin
        && let Some((credentials, _)) = &stored
    {
        eprintln!("Authenticating with existing credentials...");
        match client.check_login(&endpoint, credentials) {
            Ok(_) => {
                emit("Login Succeeded\n")?;
                return Ok(0);
            }
            Err(e) => eprintln!("{e}"),
        }
    }

    let username = match &args.username {
        Some(user) => user.clone(),
        None => {
            let default = stored
                .as_ref()
                .map(|(c, _)| c.username.clone())
                .filter(|u| !u.is_empty());
            let prompt = match &default {
                Some(user) => format!("Username ({user}): "),
                None => "Username: ".to_owned(),
            };
            let typed = prompt_line(&prompt)?;
            match (typed.is_empty(), default) {
                (true, Some(user)) => user,
                (true, None) => bail!("a user name is required to log in to {key}"),
                (false, _) => typed,
            }
        }
    };
    let password = if let Some(password) = &args.password {
        password.clone()
    } else if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from stdin")?;
        // `echo` and here-strings end it with a newline, which is not part
        // of it (Docker trims the same).
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        prompt_hidden("Password: ")?
    };
    if password.is_empty() {
        bail!("a password is required to log in to {key}");
    }

    let mut credentials = Credentials::new(username, password);
    let check = client
        .check_login(&endpoint, &credentials)
        .with_context(|| format!("login to {key} failed"))?;
    credentials.identity_token = check.identity_token;
    let source = store
        .store(&key, &credentials)
        .with_context(|| format!("cannot save the credentials for {key}"))?;
    if let Source::File(path) = &source {
        eprintln!(
            "WARNING! Your password is stored unencrypted in {}. Configure a credential helper \
             (credsStore) to keep it in a keyring instead.",
            path.display()
        );
    }
    emit("Login Succeeded\n")?;
    Ok(0)
}

pub fn logout(args: &LogoutArgs) -> anyhow::Result<i32> {
    let key = credentials::server_key(args.registry.as_deref().unwrap_or(""));
    let erased = CredentialStore::from_env()
        .erase(&key)
        .with_context(|| format!("cannot remove the credentials for {key}"))?;
    if erased.is_empty() {
        emit(&format!("Not logged in to {key}\n"))?;
    } else {
        emit(&format!("Removing login credentials for {key}\n"))?;
    }
    Ok(0)
}

/// Reads one line from the terminal after `prompt` (on stderr).
fn prompt_line(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "cannot prompt for credentials: stdin is not a terminal; pass --username and \
             --password-stdin"
        );
    }
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// [`prompt_line`] with echo off, restored even when reading fails.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("cannot prompt for a password: stdin is not a terminal; pass --password-stdin");
    }
    let _echo_off = EchoOff::new(0)?;
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    // The newline typed was not echoed.
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Turns the terminal's echo off until dropped.
struct EchoOff {
    fd: i32,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: i32) -> anyhow::Result<EchoOff> {
        // SAFETY: tcgetattr fills the termios it is given; fd is a terminal
        // (checked by the caller) and the struct is plain data.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot read the terminal mode");
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: sets the mode just read, with echo off.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot turn the terminal echo off");
        }
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the mode read in `new`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}
