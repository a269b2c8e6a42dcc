//! trybuild UI tests of `#[derive(Evaluation)]`: each file under tests/ui/<category>/ is a
//! mistake a benchmark author can make, with the reviewed compiler output beside it.
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite` and review the diff.

#[test]
fn derive_errors_point_at_the_mistake() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/**/*.rs");
}
