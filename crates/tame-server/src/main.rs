//! `tame-server`: the server alone (the `tame serve` command of the CLI
//! runs the same [`tame_server::run`], with the same flags). Flags override
//! `TAME_*` variables, which override the config file.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "tame-server", version, about = "Serve the Tame HTTP API")]
struct Args {
    #[command(flatten)]
    flags: tame_server::ServeFlags,
}

// The same allocator as the `tame` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let flags = Args::parse().flags;
    tame_server::init_logging(flags.log_format)?;
    let config = flags.config()?;
    let runtime = config.runtime()?;
    runtime.block_on(tame_server::run_until(config, tame_server::shutdown_signal(), |addr| {
        // Machine-readable line for scripts and tests.
        println!("listening on http://{addr}");
    }))
}
