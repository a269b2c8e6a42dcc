//! Standard output that a closed pipe does not stop.
//!
//! `println!` panics where stdout is a pipe whose reader has gone (`evalkit list | head -1`),
//! and Rust ignores SIGPIPE, so every write would meet the closed pipe as an error. The CLI
//! prints through [`outln!`] and [`out!`] instead: from the first write that finds the pipe
//! closed, what it would print to stdout is dropped, and the command goes on to its end and
//! its own exit status (a failed gate still exits 1, a failed task 2; notes still go to
//! stderr).

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a write found stdout closed.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to stdout (see the module docs).
pub fn write(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => CLOSED.store(true, Ordering::Relaxed),
        Err(e) => panic!("failed printing to stdout: {e}"),
    }
}
/// `println!` to stdout, dropped once stdout is a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` to stdout, dropped once stdout is a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*))
    };
}
