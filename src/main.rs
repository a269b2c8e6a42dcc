//! The `evalkit` command-line tool: a thin `main` over [`cli::run`].

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // libtorch's CPU buffers are reused rather than mapped afresh for every batch.
    evalkit::core::allocator::tune();
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`evalkit list | head`) is not an error.
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
