//! The library's `tracing` events on standard error, as the CLI's own notes are printed
//! (`warning: …`): a served model's retries, checkpoint tensors the model does not use. The
//! level is `warn`; `EVALKIT_LOG` sets another (`off`, `error`, `warn`, `info`, `debug`,
//! `trace`).

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// The variable that sets the level.
const VAR: &str = "EVALKIT_LOG";

/// Installs the subscriber. A level that does not parse is said once, and `warn` kept.
pub fn init() {
    let (level, bad) = match std::env::var(VAR) {
        Ok(v) => match v.trim().parse::<LevelFilter>() {
            Ok(level) => (level, None),
            Err(_) => (LevelFilter::WARN, Some(v)),
        },
        Err(_) => (LevelFilter::WARN, None),
    };
    let installed = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(Plain)
        .try_init()
        .is_ok();
    if let Some(v) = bad.filter(|_| installed) {
        tracing::warn!("{VAR}={v:?} is no level (off, error, warn, info, debug, trace): warn is kept");
    }
}

/// `level: message fields`, one line per event, no time or target.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(writer, "{level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
