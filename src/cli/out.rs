//! Standard output that a closed pipe ends quietly.
//!
//! `println!` panics where stdout is a pipe whose reader has gone (`evalkit list | head -1`),
//! and Rust ignores SIGPIPE, so every write would meet the closed pipe as an error. The CLI
//! prints through [`outln!`] and [`out!`] instead: a closed pipe ends the process at once with
//! status 0, as it ends `cat`. Nothing is lost: a command prints after it has written and
//! closed its files (a run's results, samples and journal), and nobody reads what is left.

/// Writes `args` to stdout (see the module docs).
pub fn write(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            // SAFETY: `_exit` ends the process at once; nothing of its state is read after.
            unsafe { libc::_exit(0) }
        }
        Err(e) => panic!("failed printing to stdout: {e}"),
    }
}

/// `println!` to stdout, ending the process quietly where stdout is a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` to stdout, ending the process quietly where stdout is a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*))
    };
}
