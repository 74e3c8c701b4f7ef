//! Misuse of `#[circuit_breaker]` fails to compile with a message that says
//! what to write. The expected messages are in `tests/ui/*.stderr`
//! (regenerate with `TRYBUILD=overwrite` and read them before committing).

#[test]
fn misuse_is_a_clear_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
