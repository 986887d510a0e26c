//! The `hoist` binary: parse arguments, call the library, map errors to exit
//! codes (0 success, 1 failure, 2 usage error; see docs/cli.md).

mod cli;

use clap::Parser;
use cli::{Cli, Command};

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|err| cli::not_here::usage_error(err));
    // Not root: build and prune run as root of a user namespace (RUN's
    // sandbox, and snapshots owned by subordinate ids). Before any thread.
    if matches!(cli.command, Command::Build(_) | Command::Prune(_)) {
        match hoist_run::userns::reexec() {
            Ok(Some(code)) => std::process::exit(code),
            Ok(None) => {}
            Err(err) => {
                eprintln!("error: {err}");
                std::process::exit(1);
            }
        }
    }
    let store = || -> anyhow::Result<std::path::PathBuf> {
        match &cli.store {
            Some(dir) => Ok(dir.clone()),
            None => Ok(hoist_store::Store::default_dir()?),
        }
    };
    let result = match &cli.command {
        Command::Parse(args) => cli::parse::run(args),
        Command::Check(args) => cli::check::run(args),
        Command::Cache(args) => cli::cache::run(args),
        Command::Manifest(args) => cli::manifest::run(args),
        Command::Man(args) => cli::man::run(args),
        Command::Version(args) => cli::version::run(args),
        Command::Run(args) => cli::not_here::run(args),
        Command::Completions(args) => cli::completions::run(args),
        Command::Build(args) => store().and_then(|s| cli::build::run(args, &s)),
        Command::Login(args) => cli::login::login(args),
        Command::Logout(args) => cli::login::logout(args),
        Command::Images(args) => store().and_then(|s| cli::images::run(args, &s)),
        Command::Inspect(args) => store().and_then(|s| cli::inspect::inspect(args, &s)),
        Command::History(args) => store().and_then(|s| cli::inspect::history(args, &s)),
        Command::K8s(args) => store().and_then(|s| cli::k8s::run(args, &s)),
        Command::Resolve(args) => store().and_then(|s| cli::resolve::run(args, &s)),
        Command::Rmi(args) => store().and_then(|s| cli::rmi::run(args, &s)),
        Command::Save(args) => store().and_then(|s| cli::save_load::save(args, &s)),
        Command::Load(args) => store().and_then(|s| cli::save_load::load(args, &s)),
        Command::Prune(args) => store().and_then(|s| cli::prune::run(args, &s)),
        Command::Pull(args) => store().and_then(|s| cli::pull::run(args, &s)),
        Command::Push(args) => store().and_then(|s| cli::push::run(args, &s)),
        Command::Tag(args) => store().and_then(|s| cli::tag::run(args, &s)),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            // A closed pipe (`hoist parse ... | head`) is not an error.
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                std::process::exit(0);
            }
            let chain = cli::chain(err.as_ref());
            eprintln!("error: {}", chain[0]);
            for cause in &chain[1..] {
                eprintln!("  caused by: {cause}");
            }
            std::process::exit(1);
        }
    }
}
