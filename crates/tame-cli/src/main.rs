//! The `tame` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    tame_cli::main_entry()
}
