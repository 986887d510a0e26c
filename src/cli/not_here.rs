//! Docker commands hoist does not have, answered with what to use instead
//! rather than clap's nearest-name guess.

use clap::Args;

/// hoist builds images; it does not run containers.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

pub fn run(_: &RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!(
        "hoist builds images and does not run containers: run the image with podman run IMAGE \
         (podman reads hoist's --output type=oci-archive or a registry), or with docker run IMAGE \
         once loaded (hoist build -o type=docker,dest=- . | docker load)"
    )
}
