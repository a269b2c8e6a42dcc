//! Shared build script of the crates that link libtorch: embeds libtorch's library folder as an
//! rpath so binaries, tests, benches and doctests run without `LD_LIBRARY_PATH`, and force-links
//! `torch_cuda` when the installed libtorch has it (otherwise the linker drops it as unused and
//! CUDA reads as unavailable).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
