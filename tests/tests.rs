//! The workspace's one integration-test binary (each extra binary links libtorch again).

#[macro_use]
mod util;

// Model backends: reference parity, KV cache, padding, TorchScript, bad checkpoints.
mod model;

// Engine: the five kinds on the oracle model and on real checkpoints.
mod engine;

// #[derive(Evaluation)]: every kind, against a hand-written benchmark.
mod derive;

// Compile-time errors of the derive (trybuild).
mod compiletest;

// Standard and synthetic suites on the real benchmark files.
mod suites;

// Resuming a killed run (a real process, SIGKILL).
mod resume;

// Hugging Face Hub loader against a cache laid out by the test.
mod hub;

// The command-line tool.
mod cli;

// Data-parallel runs over processes: --shards, torchrun's variables, merge.
mod shards;

// A model served by a real engine (llama.cpp's server) through its OpenAI-compatible API.
mod served;

// Chat templates applied as lm-eval applies them, on a ChatML checkpoint made by the test.
mod chat;

// `evalkit report`: the HTML page in headless Chromium, its charts, its numbers.
mod report;

// Seeded random checkpoints: `evalkit random-checkpoint` and the library's writer.
mod random;
