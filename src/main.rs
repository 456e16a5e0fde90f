//! `lootsync`: the peer daemon and its command line. All protocol, storage and daemon logic
//! lives in the library; this binary parses arguments and prints results.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
