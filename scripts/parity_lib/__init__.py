"""Per-sample parity of evalkit with lm-evaluation-harness 0.4.13 (run via scripts/parity).

Modules: plan (what is compared), data (our benchmark files in lm-eval's field layouts),
suites (lm-eval task files over those rows), runners (the two CLIs), compare (per-sample
checks and tolerances), main (the driver and its report).
"""
