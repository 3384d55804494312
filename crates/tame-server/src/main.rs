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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TAME_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Args::parse().flags.config()?;
    let runtime = config.runtime()?;
    runtime.block_on(tame_server::run_until(config, tame_server::shutdown_signal(), |addr| {
        // Machine-readable line for scripts and tests.
        println!("listening on http://{addr}");
    }))
}
