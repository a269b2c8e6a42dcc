//! Shared build script of the crates that link libtorch:
//!
//! * embeds libtorch's library folder as an rpath, so this workspace's binaries, tests, benches
//!   and doctests run without `LD_LIBRARY_PATH`;
//! * links that folder into `OUT_DIR` and names the link as a native search path. Cargo puts
//!   search paths inside the target directory on the dynamic-library path of `cargo run` and
//!   `cargo test` for every crate that depends on this one, so a user's own crate that depends
//!   on evalkit runs its tests and binaries with no build script of its own (an rpath set
//!   here would reach only this package's targets);
//! * force-links `torch_cuda` when the installed libtorch has it (otherwise the linker drops it
//!   as unused and CUDA reads as unavailable).
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    if let Some(out) = std::env::var_os("OUT_DIR") {
        let link = PathBuf::from(out).join("libtorch-lib");
        let _ = std::fs::remove_file(&link);
        #[cfg(unix)]
        match std::os::unix::fs::symlink(&lib, &link) {
            Ok(()) => println!("cargo:rustc-link-search=native={}", link.display()),
            Err(e) => println!("cargo:warning=could not link {lib} into {}: {e}", link.display()),
        }
    }
}
