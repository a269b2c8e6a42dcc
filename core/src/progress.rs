//! The progress display of one evaluation: rows done of the rows asked, rows per second, tokens
//! per second through the model, and the time left. Work is counted in requests (what the
//! scheduler runs) and shown in rows, the unit a user asked for.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The bar on screen, if any (with its [`Progress`]'s number): [`suspend`] clears it while
/// other output is written.
static SHOWN: Mutex<Option<(u64, indicatif::ProgressBar)>> = Mutex::new(None);
/// Numbers the bars.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Runs `f` — a write to the terminal, such as a warning — with the evaluation's progress bar
/// cleared from the screen and drawn again after, so that the two do not share a line.
///
/// ```
/// let p = evalkit_core::Progress::new("arc_easy");
/// evalkit_core::progress::suspend(|| eprintln!("warning: a retry"));
/// p.finish();
/// ```
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    // The bar is cloned (a handle) so that `f` runs without the lock held.
    let shown = SHOWN.lock().ok().and_then(|s| s.as_ref().map(|(_, bar)| bar.clone()));
    match shown {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// A progress bar for one evaluation (hidden when stderr is not a terminal, as indicatif does).
///
/// ```
/// let p = evalkit_core::Progress::new("arc_easy");
/// p.finish();
/// ```
pub struct Progress {
    bar: indicatif::ProgressBar,
    /// Its number in [`SHOWN`].
    id: u64,
    rows: Cell<usize>,
    requests: Cell<usize>,
    requests_done: Cell<usize>,
    tokens: Cell<usize>,
    start: Instant,
}

impl Progress {
    /// A bar named after the evaluation.
    pub fn new(name: &str) -> Self {
        let bar = indicatif::ProgressBar::new(0);
        // Until its rows are known (the data read, the prompts built), the bar says so rather
        // than `0/0 rows`.
        bar.set_style(indicatif::ProgressStyle::with_template("{msg:>24} reading its rows").expect("valid template"));
        bar.set_message(name.to_string());
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut shown) = SHOWN.lock() {
            *shown = Some((id, bar.clone()));
        }
        Progress {
            bar,
            id,
            rows: Cell::new(0),
            requests: Cell::new(0),
            requests_done: Cell::new(0),
            tokens: Cell::new(0),
            start: Instant::now(),
        }
    }

    /// The rows the evaluation runs (the bar's length).
    pub(crate) fn set_rows(&self, rows: usize) {
        self.rows.set(rows);
        self.bar.set_length(rows as u64);
        self.bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:>24} [{bar:28}] {pos}/{len} rows  {prefix}  ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
    }

    /// The requests those rows lowered to, about to run.
    pub(crate) fn set_requests(&self, requests: usize) {
        self.requests.set(requests);
        self.requests_done.set(0);
    }

    /// `requests` more requests finished, having run `tokens` tokens through the model (zero
    /// for a chunk read back from the journal).
    pub(crate) fn advance(&self, requests: usize, tokens: usize) {
        self.requests_done.set(self.requests_done.get() + requests);
        self.tokens.set(self.tokens.get() + tokens);
        let (done, all, rows) = (self.requests_done.get(), self.requests.get().max(1), self.rows.get());
        // Rows done in proportion to requests done (a row lowers to one or more requests).
        let rows_done = rows * done.min(all) / all;
        self.bar.set_position(rows_done as u64);
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_prefix(format!(
            "{:.1} rows/s  {:.0} tokens/s",
            rows_done as f64 / secs,
            self.tokens.get() as f64 / secs
        ));
    }

    /// Leaves the finished bar on screen.
    pub fn finish(&self) {
        self.bar.set_position(self.rows.get() as u64);
        self.bar.finish();
        self.forget();
    }

    /// No longer the bar [`suspend`] clears (once finished, or dropped on an error).
    fn forget(&self) {
        if let Ok(mut shown) = SHOWN.lock() {
            if shown.as_ref().is_some_and(|(id, _)| *id == self.id) {
                *shown = None;
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.forget();
    }
}
