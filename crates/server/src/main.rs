//! `upcase-server`: parses its command line and runs the server library.
#![forbid(unsafe_code)]
use std::process::ExitCode;

use upcase_cli::EXIT_FAILURE;
use upcase_server::Args;

fn main() -> ExitCode {
    let args = upcase_cli::parse_args::<Args>();
    args.init_logging();
    upcase_cli::finish(upcase_server::run(args), |_| EXIT_FAILURE)
}
