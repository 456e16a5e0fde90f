//! `lootsync`: the peer daemon and its command line. All logic lives in the library.

fn main() -> std::process::ExitCode {
    loot_sync::cli::main()
}
