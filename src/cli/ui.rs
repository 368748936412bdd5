//! `asdo ui`: every task live in a local web page (flags → `ui::serve`).

use std::net::IpAddr;

use clap::Args;

use super::Global;
use crate::error::Result;
use crate::ui;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo ui                        open the tasks of this environment in the browser
  asdo ui -A --no-open           every namespace; print the URL only
  asdo ui --port 8080
  asdo --runtime local ui        the tasks of this machine's local runtime

The first line on stdout is the URL to open, with its access token. Keep it private:
whoever has it can read the task logs and delete task pods (or local tasks) with your
credentials.")]
pub struct UiArgs {
    /// Address to listen on. Anything but a loopback address is reachable from other
    /// machines (asdo warns).
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Do not open a browser; only print the URL.
    #[arg(long)]
    pub no_open: bool,
    /// Show task pods in every namespace (a cluster's; local tasks have one).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

pub async fn run(global: &Global, args: UiArgs) -> Result<i32> {
    let scope = global.scope()?;
    ui::serve(ui::Options {
        address: args.address,
        port: args.port,
        open: !args.no_open,
        all_namespaces: args.all_namespaces,
        scope,
    })
    .await
}
