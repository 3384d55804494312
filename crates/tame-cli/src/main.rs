//! The `tame` binary: parses the command line and hands over to the library.

// mimalloc: the server's many small short-lived allocations (JSON values,
// strings) cost less than with the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tame_cli::main_entry()
}
