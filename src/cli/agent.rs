//! `asdo agent`: the container entrypoint (issue 4). Placeholder until the agent lands.

use clap::Args;

use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct AgentArgs {}

pub async fn run(_args: AgentArgs) -> Result<i32> {
    Err(Error::other("asdo agent is not built yet"))
}
