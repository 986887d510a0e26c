//! The flags every command that talks to a registry shares (`build`,
//! `pull`, `push`, `login`), the mirror flag of those that pull, and the
//! one place that merges them with hoist's config file into what the
//! library needs.

use anyhow::Context;
use clap::Args;
use hoist_registry::{ClientOptions, Format, PullOptions, PushOptions, Settings};
use std::path::PathBuf;

/// `--registry-mirror`, for the commands that pull.
#[derive(Debug, Clone, Default, Args)]
pub struct MirrorArgs {
    /// Fetch images of REGISTRY from HOST first, as Docker's registry
    /// mirrors: `docker.io=127.0.0.1:5000` serves `FROM node:14-alpine`
    /// from `127.0.0.1:5000/library/node:14-alpine`; `HOST` alone mirrors
    /// Docker Hub (repeatable; replaces the config file's mirrors of that
    /// registry).
    #[arg(long = "registry-mirror", value_name = "REGISTRY=HOST")]
    pub registry_mirrors: Vec<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct RegistryArgs {
    /// Talk plain HTTP to this registry host (loopback hosts always are).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Trust the CA certificates in this PEM file, for every registry or,
    /// as `REGISTRY=FILE`, for one (repeatable).
    #[arg(long = "ca-cert", value_name = "[REGISTRY=]FILE")]
    pub ca_certs: Vec<String>,
    /// hoist's config file (default: $XDG_CONFIG_HOME/hoist/config.toml;
    /// docs/config.md).
    #[arg(long = "config", env = "HOIST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl RegistryArgs {
    /// The config file's settings with these flags (and `mirrors`)
    /// merged in.
    pub fn settings(&self, mirrors: &MirrorArgs) -> anyhow::Result<Settings> {
        let mirrors: Vec<(String, String)> = mirrors
            .registry_mirrors
            .iter()
            .map(|spec| {
                // `HOST` alone mirrors Docker Hub, as dockerd's --registry-mirror.
                let (registry, host) = spec.split_once('=').unwrap_or(("docker.io", spec));
                (registry.to_owned(), host.to_owned())
            })
            .collect();
        let ca_certs: Vec<(Option<String>, PathBuf)> = self
            .ca_certs
            .iter()
            .map(|spec| match spec.split_once('=') {
                Some((registry, file)) if !registry.contains('/') => {
                    (Some(registry.to_owned()), PathBuf::from(file))
                }
                _ => (None, PathBuf::from(spec)),
            })
            .collect();
        let settings = Settings::load(self.config.as_deref())?;
        if let Some(warning) = &settings.warning {
            eprintln!("warning: {warning}");
        }
        Ok(settings.with_flags(&mirrors, &self.insecure_registries, &ca_certs))
    }

    /// Client options for a command that talks to registries.
    pub fn client_options(&self) -> anyhow::Result<ClientOptions> {
        self.settings(&MirrorArgs::default())?
            .client_options()
            .context("cannot use the registry settings")
    }

    /// What pulling (and `FROM`) needs.
    pub fn pull_options(&self, mirrors: &MirrorArgs) -> anyhow::Result<PullOptions> {
        self.settings(mirrors)?
            .pull_options()
            .context("cannot use the registry settings")
    }

    /// What pushing needs.
    pub fn push_options(&self, format: Format) -> anyhow::Result<PushOptions> {
        self.settings(&MirrorArgs::default())?
            .push_options(format)
            .context("cannot use the registry settings")
    }
}
