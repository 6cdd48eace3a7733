//! `upcase-client`: see the library for what it does.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let (args, matches) = upcase_cli::parse_args_and_matches::<upcase_client::Args>();
    let args = args.with_sources(&matches);
    args.verbosity.init_logging();
    upcase_cli::finish(upcase_client::run_cli(args), upcase_client::exit_code)
}
