//! What metadata instructions do to an image config, as BuildKit's
//! dispatchers do it, and the history line each one leaves.
//!
//! ENV, LABEL, MAINTAINER, USER, EXPOSE, VOLUME, CMD, ENTRYPOINT, SHELL,
//! HEALTHCHECK, STOPSIGNAL and ONBUILD change only the config; none of
//! them makes a layer. Words arrive already expanded.

use hoist_dockerfile::instructions::{CommandLine, Health, KeyValue};
use hoist_oci::image::{Healthcheck, ImageConfig, RunConfig};

/// Docker's default PATH for Linux images built FROM scratch.
pub use hoist_run::DEFAULT_PATH;

/// BuildKit's `emptyImage`: the config of `FROM scratch`.
pub fn empty_config(os: &str, architecture: &str, variant: Option<&str>) -> ImageConfig {
    ImageConfig {
        architecture: architecture.to_string(),
        os: os.to_string(),
        variant: variant.map(str::to_string),
        config: Some(RunConfig {
            env: vec![format!("PATH={DEFAULT_PATH}")],
            working_dir: "/".into(),
            ..RunConfig::default()
        }),
        ..ImageConfig::default()
    }
}

/// The run config, created when absent.
pub fn run_config(config: &mut ImageConfig) -> &mut RunConfig {
    config.config.get_or_insert_with(RunConfig::default)
}

/// BuildKit's `addEnv`: replaces `KEY=` in place, else appends.
pub fn add_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| hoist_dockerfile::parser::go_quote(s))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a `[]string`: `[a b]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

pub fn env(config: &mut ImageConfig, pairs: &[KeyValue]) -> String {
    let run = run_config(config);
    let mut history = String::from("ENV");
    for p in pairs {
        add_env(&mut run.env, &p.key, &p.value);
        history.push_str(&format!(" {}={}", p.key, p.value));
    }
    history
}

pub fn label(config: &mut ImageConfig, pairs: &[KeyValue]) -> String {
    let run = run_config(config);
    let mut history = String::from("LABEL");
    for p in pairs {
        run.labels.insert(p.key.clone(), p.value.clone());
        history.push_str(&format!(" {}={}", p.key, p.value));
    }
    history
}

/// The argv for CMD/ENTRYPOINT/HEALTHCHECK: shell form runs through the
/// image's SHELL (default `/bin/sh -c`).
pub fn with_shell(config: &ImageConfig, command: &CommandLine) -> Vec<String> {
    if !command.prepend_shell {
        return command.args.clone();
    }
    let shell = config
        .config
        .as_ref()
        .map(|c| c.shell.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
    shell
        .into_iter()
        .chain(command.args.iter().cloned())
        .collect()
}

/// Where BuildKit puts a RUN heredoc that starts with `#!`.
pub const HEREDOC_DIR: &str = "/dev/pipes";

/// A file a RUN step runs: its name and content.
pub type Script = (String, String);

/// A RUN's argv, BuildKit's `dispatchRun`: a lone heredoc (`RUN <<EOF`)
/// runs its body through the shell, or, when the body starts with `#!`, is
/// written to [`HEREDOC_DIR`]`/NAME` (mode 0755, returned as the second
/// value) and that file run; any other heredoc is put back together with
/// its command line for the shell to read.
pub fn run_argv(
    config: &ImageConfig,
    command: &CommandLine,
) -> Result<(Vec<String>, Option<Script>), String> {
    let Some(first) = command.files.first() else {
        return Ok((with_shell(config, command), None));
    };
    if command.args.len() != 1 || !command.prepend_shell {
        return Err(format!(
            "parsing produced an invalid run command: {:?}",
            command.args
        ));
    }
    let mut file = None;
    let body = if hoist_dockerfile::parser::heredoc_marker(&command.args[0]).is_some() {
        if first.data.starts_with("#!") {
            if first.name.contains('/') || first.name.is_empty() {
                return Err(format!("invalid heredoc name {:?}", first.name));
            }
            let data = if first.chomp {
                hoist_dockerfile::parser::chomp_heredoc_content(&first.data)
            } else {
                first.data.clone()
            };
            file = Some((first.name.clone(), data));
            format!("{HEREDOC_DIR}/{}", first.name)
        } else {
            first.data.clone()
        }
    } else {
        let mut full = command.args[0].clone();
        for f in &command.files {
            full.push('\n');
            full.push_str(&f.data);
            full.push_str(&f.name);
        }
        full
    };
    let line = CommandLine {
        args: vec![body],
        prepend_shell: true,
        files: Vec::new(),
    };
    Ok((with_shell(config, &line), file))
}

pub fn cmd(config: &mut ImageConfig, command: &CommandLine) -> String {
    let args = with_shell(config, command);
    let run = run_config(config);
    run.cmd = Some(args.clone());
    run.args_escaped = true;
    format!("CMD {}", go_quote_list(&args))
}

/// ENTRYPOINT also clears a CMD inherited from the base image, unless this
/// stage set one itself.
pub fn entrypoint(
    config: &mut ImageConfig,
    command: &CommandLine,
    cmd_set_in_stage: bool,
) -> String {
    let args = with_shell(config, command);
    let run = run_config(config);
    run.entrypoint = Some(args.clone());
    if !cmd_set_in_stage {
        run.cmd = None;
    }
    format!("ENTRYPOINT {}", go_quote_list(&args))
}

pub fn healthcheck(config: &mut ImageConfig, health: &Health) -> String {
    let check = Healthcheck {
        test: health.test.clone(),
        interval: health.interval as i64,
        timeout: health.timeout as i64,
        start_period: health.start_period as i64,
        start_interval: health.start_interval as i64,
        retries: i64::from(health.retries),
    };
    run_config(config).healthcheck = Some(check);
    format!(
        "HEALTHCHECK &{{{} {} {} {} {} {}}}",
        go_list(&health.test),
        go_duration(health.interval),
        go_duration(health.timeout),
        go_duration(health.start_period),
        go_duration(health.start_interval),
        health.retries
    )
}

/// Go's `time.Duration.String()` for the common cases (`30s`, `1m30s`,
/// `500ms`, `0s`).
pub fn go_duration(nanos: u64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        return match nanos {
            n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}µs", n / 1_000),
            n => format!("{n}ns"),
        };
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = nanos / 60_000_000_000 % 60;
    let seconds = nanos % 60_000_000_000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    let whole = seconds / 1_000_000_000;
    let frac = seconds % 1_000_000_000;
    if frac == 0 {
        out.push_str(&format!("{whole}s"));
    } else {
        let digits = format!("{frac:09}");
        out.push_str(&format!("{whole}.{}s", digits.trim_end_matches('0')));
    }
    out
}

/// BuildKit's port parsing for EXPOSE: `80`, `80/udp`, `8000-8002`; the
/// result is `port/proto` with the protocol in lower case.
pub fn parse_ports(raw: &str) -> Result<Vec<String>, String> {
    let container = raw.rsplit(':').next().unwrap_or(raw);
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(format!("invalid port: {raw:?}: no port specified"));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" => "tcp".to_string(),
        p @ ("tcp" | "udp" | "sctp") => p.to_string(),
        p => return Err(format!("invalid port: {raw:?}: invalid proto: {p}")),
    };
    let number = |s: &str| -> Result<u32, String> {
        s.parse::<u32>()
            .ok()
            .filter(|n| *n <= 65535)
            .ok_or_else(|| format!("invalid containerPort: {port}"))
    };
    let (start, end) = match port.split_once('-') {
        Some((a, b)) if a != b => (number(a)?, number(b)?),
        Some((a, _)) => (number(a)?, number(a)?),
        None => (number(port)?, number(port)?),
    };
    if end < start {
        return Err(format!("invalid port range: {port}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// STOPSIGNAL accepts a signal name (with or without `SIG`) or number.
pub fn valid_signal(signal: &str) -> bool {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    if let Ok(n) = signal.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let name = signal.strip_prefix("SIG").unwrap_or(signal);
    if let Some(rt) = name
        .strip_prefix("RTMIN")
        .or_else(|| name.strip_prefix("RTMAX"))
    {
        return rt.is_empty() || rt.trim_start_matches(['+', '-']).parse::<u32>().is_ok();
    }
    NAMES.contains(&name)
}

/// WORKDIR: relative paths join the current one; the result is cleaned.
pub fn normalize_workdir(current: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", if current.is_empty() { "/" } else { current })
    };
    let cleaned = String::from_utf8(super::copy::clean(&joined)).unwrap_or_default();
    format!("/{cleaned}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_replaces_in_place() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".into()];
        add_env(&mut env, "PATH", "/usr/bin");
        add_env(&mut env, "B", "2");
        assert_eq!(env, ["PATH=/usr/bin", "A=1", "B=2"]);
    }

    #[test]
    fn ports_like_buildkit() {
        assert_eq!(parse_ports("3000").unwrap(), ["3000/tcp"]);
        assert_eq!(parse_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            parse_ports("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(parse_ports("70000").is_err());
        assert!(parse_ports("80/xyz").is_err());
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
    }

    #[test]
    fn workdir_and_signals() {
        assert_eq!(normalize_workdir("/", "app"), "/app");
        assert_eq!(normalize_workdir("/app", "../srv/./x/"), "/srv/x");
        assert_eq!(normalize_workdir("/app", "/"), "/");
        assert!(
            valid_signal("SIGTERM")
                && valid_signal("KILL")
                && valid_signal("9")
                && valid_signal("SIGRTMIN+3")
        );
        assert!(!valid_signal("SIGFOO") && !valid_signal("99"));
    }

    #[test]
    fn shell_form_uses_the_image_shell() {
        let mut config = empty_config("linux", "amd64", None);
        let line = CommandLine {
            args: vec!["node server.js".into()],
            prepend_shell: true,
            files: vec![],
        };
        assert_eq!(
            cmd(&mut config, &line),
            "CMD [\"/bin/sh\" \"-c\" \"node server.js\"]"
        );
        run_config(&mut config).shell = vec!["/bin/bash".into(), "-lc".into()];
        entrypoint(&mut config, &line, false);
        let run = config.config.as_ref().unwrap();
        assert_eq!(
            run.entrypoint.as_deref().unwrap(),
            ["/bin/bash", "-lc", "node server.js"]
        );
        assert!(run.cmd.is_none(), "ENTRYPOINT clears an inherited CMD");
    }
}
