//! The workspace's one integration-test binary (each extra binary links libtorch again).

#[macro_use]
mod util;

// Model backends: reference parity, KV cache, padding, TorchScript, bad checkpoints.
mod model;
