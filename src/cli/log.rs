//! The library's `tracing` events on standard error, one line each as the CLI's notes and
//! errors are printed (`warning: …`, prefixed `[shard R of N]` in a data-parallel run's
//! processes, and written between the progress bar's redraws): a served model's retries,
//! batches halved on running out of memory, checkpoint tensors the model does not use. The
//! level is `warn`; `EVALKIT_LOG` sets another (`off`, `error`, `warn`, `info`, `debug`,
//! `trace`).

use std::fmt;
use std::io::Write;
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
    let shard = super::shard_prefix();
    let installed = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(|| BelowBar)
        .event_format(Plain { shard })
        .try_init()
        .is_ok();
    if let Some(v) = bad.filter(|_| installed) {
        tracing::warn!("{VAR}={v:?} is no level (off, error, warn, info, debug, trace): warn is kept");
    }
}

/// Standard error, written with the progress bar cleared ([`evalkit::core::progress::suspend`]).
struct BelowBar;

impl Write for BelowBar {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        evalkit::core::progress::suspend(|| std::io::stderr().write(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `level: message fields`, one line per event, no time or target; after the shard's prefix.
struct Plain {
    shard: String,
}

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
        write!(writer, "{}{level}: ", self.shard)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
