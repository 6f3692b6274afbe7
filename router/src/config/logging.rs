//! Log filters: `[log] level` and `RUST_LOG`, checked by one rule.
//!
//! A filter is a level (`info`) or comma-separated `tracing` directives
//! (`info,ferry_router=debug`), and every directive must name one of
//! [`LOG_LEVELS`]. `tracing`'s own parser takes any bare word as a target
//! to log at `trace` — `verbose` would silence every line, `listening on`
//! included — so a directive without a known level is refused here.

use tracing_subscriber::EnvFilter;

/// The levels a log filter may name, most severe first (any letter case).
pub const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// The environment variable that, when set and not empty, wins over
/// `[log] level`.
pub const RUST_LOG: &str = "RUST_LOG";

/// The filter `directives` describe.
///
/// # Errors
///
/// One line saying which directive is not understood, listing the valid
/// levels.
pub fn log_filter(directives: &str) -> Result<EnvFilter, String> {
    let directives: Vec<&str> = directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(format!("no level given ({})", valid_levels()));
    }
    for &directive in &directives {
        // `target[span{field=value}]=level`: the level follows the last `=`.
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LOG_LEVELS
            .iter()
            .any(|l| l.eq_ignore_ascii_case(level.trim()))
        {
            let what = if level == directive {
                format!("unknown level {level:?}")
            } else {
                format!("unknown level {level:?} in {directive:?}")
            };
            return Err(format!("{what} ({})", valid_levels()));
        }
    }
    EnvFilter::try_new(directives.join(","))
        .map_err(|error| format!("{error} ({})", valid_levels()))
}

/// The effective log filter: `rust_log` (the value of `RUST_LOG`) when set
/// and not blank, else `level` (`[log] level`).
///
/// # Errors
///
/// One line naming the source (`RUST_LOG` or `log.level`) and what is
/// wrong with it.
pub fn effective_log_filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, String> {
    match rust_log {
        Some(directives) if !directives.trim().is_empty() => log_filter(directives)
            .map_err(|error| format!("invalid {RUST_LOG} {directives:?}: {error}")),
        _ => log_filter(level).map_err(|error| format!("invalid log.level {level:?}: {error}")),
    }
}

fn valid_levels() -> String {
    format!(
        "valid levels: {}; or directives such as info,ferry_router=debug",
        LOG_LEVELS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_are_accepted() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "info,ferry_router=debug",
            " warn , ferry_router::mesh=trace ",
            "info,",
        ] {
            assert!(log_filter(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn unknown_levels_are_refused_with_the_valid_ones() {
        assert_eq!(
            log_filter("verbose").unwrap_err(),
            "unknown level \"verbose\" (valid levels: error, warn, info, debug, trace, off; \
             or directives such as info,ferry_router=debug)"
        );
        let error = log_filter("info,ferry_router=loud").unwrap_err();
        assert!(
            error.starts_with("unknown level \"loud\" in \"ferry_router=loud\" (valid levels: "),
            "{error}"
        );
        // A bare target (tracing would log it at trace, and nothing else).
        assert!(log_filter("ferry_router").is_err());
        assert!(log_filter("info,=[").is_err());
        assert!(log_filter(" ").unwrap_err().starts_with("no level given"));
    }

    #[test]
    fn rust_log_wins_when_set_and_is_named_in_errors() {
        assert!(effective_log_filter("verbose", Some("info")).is_ok());
        assert!(effective_log_filter("info", Some("  ")).is_ok());
        assert_eq!(
            effective_log_filter("info", Some("verbose"))
                .unwrap_err()
                .split(':')
                .next(),
            Some("invalid RUST_LOG \"verbose\"")
        );
        assert!(
            effective_log_filter("verbose", None)
                .unwrap_err()
                .starts_with("invalid log.level \"verbose\": unknown level")
        );
    }
}
