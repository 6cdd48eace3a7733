//! Logging to stderr, the same for every program: `-v`/`-q` for the level,
//! `--log-format text|json` for the form, `--color auto|always|never` (and
//! `NO_COLOR`) for the escapes. Stdout stays the program's own.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `-v`, `-q`, `--log-format` and `--color`, flattened into each program's
/// arguments.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Verbosity {
    /// Log more: -v for debug (one line per datagram), -vv for trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log less: -q for warnings and errors only, -qq for errors only.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    /// How log lines are written on stderr: text for people, json for
    /// collectors (one object per line, counts as numbers)
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text,
          env = "UPCASE_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
    /// Colour in the text logs: auto (on a terminal, unless NO_COLOR is
    /// set), always or never
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = ColorChoice::Auto,
          env = "UPCASE_COLOR", global = true)]
    pub color: ColorChoice,
}

/// The form of each log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people: the time, the level, the message, key=value fields.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, and the fields (the
    /// message, counts as numbers).
    Json,
}

/// When text logs carry ANSI colour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set to anything but nothing.
    #[default]
    Auto,
    /// Always, even into a pipe or with `NO_COLOR` (the command line wins).
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether to colour, for stderr being a terminal or not and the value
    /// of `NO_COLOR` (<https://no-color.org>: set and not empty means no).
    pub fn colours(self, terminal: bool, no_color: Option<&OsStr>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && no_color.is_none_or(OsStr::is_empty),
        }
    }
}

impl Verbosity {
    /// The filter directive `-v`/`-q` ask for, or `None` when neither is given.
    fn directive(self) -> Option<&'static str> {
        match (self.verbose, self.quiet) {
            (0, 0) => None,
            (1, _) => Some("debug"),
            (v, _) if v >= 2 => Some("trace"),
            (_, 1) => Some("warn"),
            _ => Some("error"),
        }
    }

    /// Sends logs to stderr. The level is `-v`/`-q` when given, else
    /// `RUST_LOG`, else `info`; the form is `--log-format`'s, the colour
    /// `--color`'s.
    pub fn init_logging(self) {
        let filter = match self.directive() {
            Some(level) => EnvFilter::new(level),
            None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        };
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false);
        // A second initialisation (tests driving the library twice) is harmless.
        let _ = match self.log_format {
            LogFormat::Text => {
                let no_color = std::env::var_os("NO_COLOR");
                let ansi = self
                    .color
                    .colours(std::io::stderr().is_terminal(), no_color.as_deref());
                builder.with_ansi(ansi).try_init()
            }
            // JSON is for programs: never an escape in it.
            LogFormat::Json => builder
                .json()
                .with_ansi(false)
                .with_current_span(false)
                .with_span_list(false)
                .try_init(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        let v = |verbose, quiet| {
            Verbosity {
                verbose,
                quiet,
                ..Verbosity::default()
            }
            .directive()
        };
        assert_eq!(v(0, 0), None);
        assert_eq!(v(1, 0), Some("debug"));
        assert_eq!(v(3, 0), Some("trace"));
        assert_eq!(v(0, 1), Some("warn"));
        assert_eq!(v(0, 2), Some("error"));
    }

    #[test]
    fn colour_follows_the_choice_the_terminal_and_no_color() {
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(ColorChoice::Auto.colours(true, None));
        assert!(ColorChoice::Auto.colours(true, empty), "empty is unset");
        assert!(!ColorChoice::Auto.colours(true, set));
        assert!(!ColorChoice::Auto.colours(false, None));
        assert!(ColorChoice::Always.colours(false, set), "the flag wins");
        assert!(!ColorChoice::Never.colours(true, None));
    }
}
