//! What metadata instructions do to an image config, as BuildKit's
//! dispatchers do it, and the history line each one leaves.
//!
//! ARG, ENV, LABEL, MAINTAINER, USER, EXPOSE, VOLUME, CMD, ENTRYPOINT,
//! SHELL, HEALTHCHECK, STOPSIGNAL and ONBUILD change only the config (and
//! ARG and ENV the stage's variables); none of them makes a layer. WORKDIR
//! makes one only when its directory is missing. Words arrive already
//! expanded. [`Builder::meta_step`] applies one step; the functions below
//! it are the config changes themselves.

use crate::commit::Cached;
use crate::engine::{Builder, StageState, StepResult};
use crate::error::BuildError;
use hoist_dockerfile::instructions::{
    CommandLine, Health, Instruction, KeyValue, Kind, parse_instruction,
};
use hoist_dockerfile::parse;
use hoist_dockerfile::plan::Plan;
use hoist_dockerfile::shell::Vars;
use hoist_oci::image::{Healthcheck, ImageConfig, RunConfig};
use hoist_oci::layer::tar::Entry;
use hoist_rootfs::user::resolve_chown;
use hoist_rootfs::view::LayerIndex;

impl Builder<'_> {
    /// A metadata step (any instruction but FROM, COPY, ADD and RUN),
    /// `expanded` being `instr` with its variables expanded.
    pub(crate) fn meta_step(
        &mut self,
        instr: &Instruction,
        expanded: &Instruction,
        state: &mut StageState,
        planned: &Plan,
    ) -> Result<StepResult, BuildError> {
        let history = match &expanded.kind {
            Kind::Arg { args } => {
                let mut parts = Vec::new();
                for a in args {
                    let provided = self.request.options.build_args.get(&a.key).cloned();
                    // A bare ARG takes the value in the global scope: a
                    // global ARG or a predefined platform ARG.
                    let global = planned
                        .global_scope(&self.request.options)
                        .get(&a.key)
                        .map(str::to_string);
                    let value = provided
                        .clone()
                        .or(a.default.clone())
                        .or(if a.default.is_none() { global } else { None });
                    if let Some(v) = &value {
                        state.scope.set(&a.key, v);
                    }
                    // Values given with --build-arg stay out of the history.
                    parts.push(match (&a.default, provided) {
                        (Some(d), None) => format!("{}={d}", a.key),
                        _ => a.key.clone(),
                    });
                    state.key = crate::cache_key::arg(&state.key, &a.key, value.as_deref());
                }
                return Ok(StepResult::metadata(format!("ARG {}", parts.join(" "))));
            }
            Kind::Workdir { path } => return self.workdir_step(instr, state, path),
            Kind::Env { pairs } => {
                for p in pairs {
                    state.scope.set(&p.key, &p.value);
                }
                Some(env(&mut state.config, pairs))
            }
            Kind::Label { pairs } => Some(label(&mut state.config, pairs)),
            Kind::Maintainer { maintainer } => {
                state.config.author = Some(maintainer.clone());
                Some(format!("MAINTAINER {maintainer}"))
            }
            Kind::User { user } => {
                run_config(&mut state.config).user = user.clone();
                Some(format!("USER {user}"))
            }
            Kind::Expose { ports } => {
                let mut all = Vec::new();
                for p in ports {
                    all.extend(parse_ports(p).map_err(|e| {
                        self.invalid(instr, e, Some("write EXPOSE 3000 or EXPOSE 53/udp"))
                    })?);
                }
                run_config(&mut state.config)
                    .exposed_ports
                    .extend(all.iter().cloned());
                Some(format!("EXPOSE {}", go_list(&all)))
            }
            Kind::Volume { paths } => {
                run_config(&mut state.config)
                    .volumes
                    .extend(paths.iter().cloned());
                Some(format!("VOLUME {}", go_list(paths)))
            }
            Kind::Cmd { command } => {
                state.cmd_set = true;
                Some(cmd(&mut state.config, command))
            }
            Kind::Entrypoint { command } => {
                Some(entrypoint(&mut state.config, command, state.cmd_set))
            }
            Kind::Shell { shell } => {
                run_config(&mut state.config).shell = shell.clone();
                Some(format!("SHELL {}", go_list(shell)))
            }
            Kind::Healthcheck(health) => Some(healthcheck(&mut state.config, health)),
            Kind::Stopsignal { signal } => {
                if !valid_signal(signal) {
                    return Err(self.invalid(
                        instr,
                        format!("invalid signal: {signal}"),
                        Some("use a name such as SIGTERM or SIGINT, or a number"),
                    ));
                }
                run_config(&mut state.config).stop_signal = signal.clone();
                Some(format!("STOPSIGNAL {signal}"))
            }
            Kind::Onbuild { expression } => {
                run_config(&mut state.config)
                    .on_build
                    .push(expression.clone());
                None
            }
            Kind::From { .. } | Kind::Copy(_) | Kind::Add(_) | Kind::Run { .. } => {
                unreachable!("not a metadata instruction")
            }
        };
        state.key = crate::cache_key::metadata(&state.key, &expanded.original, &expanded.kind);
        Ok(StepResult {
            history,
            layer_bytes: None,
            cached: false,
        })
    }

    /// The base image's ONBUILD triggers, which run first and are not
    /// inherited: taken out of the config, parsed, placed at `from`.
    pub(crate) fn onbuild_triggers(
        &self,
        from: &Instruction,
        state: &mut StageState,
    ) -> Result<Vec<Instruction>, BuildError> {
        let triggers = std::mem::take(&mut run_config(&mut state.config).on_build);
        let mut out = Vec::new();
        for trigger in triggers {
            let ast = parse(&format!("{trigger}\n")).map_err(|e| {
                self.invalid(
                    from,
                    format!("ONBUILD trigger `{trigger}` does not parse: {}", e.message),
                    None,
                )
            })?;
            for node in &ast.nodes {
                let mut instr = parse_instruction(node).map_err(|e| {
                    self.invalid(
                        from,
                        format!("ONBUILD trigger `{trigger}`: {}", e.message),
                        e.hint.as_deref(),
                    )
                })?;
                instr.span = from.span;
                if matches!(
                    instr.kind,
                    Kind::From { .. } | Kind::Onbuild { .. } | Kind::Maintainer { .. }
                ) {
                    return Err(self.invalid(
                        from,
                        format!(
                            "{} isn't allowed as an ONBUILD trigger (in the base image's ONBUILD `{trigger}`)",
                            instr.keyword.to_uppercase()
                        ),
                        Some("the base image is broken: rebuild it without that trigger"),
                    ));
                }
                out.push(instr);
            }
        }
        Ok(out)
    }

    /// WORKDIR sets the directory and creates it (owned by the stage's
    /// USER) when missing: a layer then, as BuildKit makes one. Keyed by
    /// the path and the user, so a cached WORKDIR reads no layer.
    fn workdir_step(
        &mut self,
        instr: &Instruction,
        state: &mut StageState,
        path: &str,
    ) -> Result<StepResult, BuildError> {
        let current = state.run().working_dir.clone();
        let wd = normalize_workdir(&current, path);
        run_config(&mut state.config).working_dir = wd.clone();
        let user = state.run().user.clone();
        let history = format!("WORKDIR {wd}");
        let key = crate::cache_key::workdir(&state.key, &wd, &user, self.layer_format());
        match self.cached(&key)? {
            Some(Cached::Layer(layer)) => return Ok(state.reuse(key, &layer, history)),
            Some(Cached::Empty) => {
                state.key = key;
                return Ok(StepResult {
                    cached: true,
                    ..StepResult::metadata(history)
                });
            }
            None => {}
        }
        self.read_view(instr, state)?;
        let path = state
            .view
            .resolve(wd.trim_start_matches('/').as_bytes(), true)
            .map_err(|e| self.step_error(instr, e))?;
        if path.is_empty() || state.view.is_dir(&path) {
            self.record_empty(&key)?;
            state.key = key;
            return Ok(StepResult::metadata(history));
        }
        let (uid, gid) = if user.is_empty() {
            (0, 0)
        } else {
            resolve_chown(&user, &state.view).map_err(|e| self.step_error(instr, e))?
        };
        let mut changes = LayerIndex::default();
        let mut current = Vec::new();
        for part in hoist_rootfs::view::components(&path) {
            current = hoist_rootfs::view::join(&current, part);
            match state.view.get(&current) {
                None => changes.insert(
                    Entry::dir(current.clone())
                        .with_mode(0o755)
                        .with_owner(uid, gid),
                ),
                Some(dir) => changes.insert(dir.clone()),
            }
        }
        let (bytes, cached) =
            self.commit_layer(instr, state, "WORKDIR", &wd, changes, Some(key))?;
        Ok(StepResult {
            history: Some(history),
            layer_bytes: Some(bytes),
            cached,
        })
    }
}

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
    let cleaned = String::from_utf8(crate::copy::clean(&joined)).unwrap_or_default();
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
