//! `asdo doctor`: can this user run tasks in this environment? The checks are
//! `crate::doctor`'s (the cluster's, or this machine's on the local runtime); one line
//! each here.

use super::Global;
use crate::doctor::{self, Level};
use crate::error::{Result, exit};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  asdo doctor -e prod
  asdo --runtime local doctor   bubblewrap, opencode, git, the state directory, slots, a provider

Exit 1 when a check fails (FAIL); ok, warn and skip lines exit 0.")]
pub struct DoctorArgs {}

pub async fn run(global: &Global, _args: DoctorArgs) -> Result<i32> {
    let scope = global.scope()?;
    let mut failed = false;
    doctor::run(&scope, &mut |c| {
        failed |= c.level == Level::Fail;
        println!("{}  {}", c.level.tag(), c.message);
    })
    .await;
    Ok(if failed { exit::FAILURE } else { exit::OK })
}
