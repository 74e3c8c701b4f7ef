use lasier_macros::circuit_breaker;
use lasier_sync::{CircuitBreaker, Error};

static BREAKER: std::sync::LazyLock<CircuitBreaker> =
    std::sync::LazyLock::new(|| CircuitBreaker::builder("ui").build().unwrap());

#[circuit_breaker]
fn no_breaker() -> Result<(), Error<()>> {
    Ok(())
}

#[circuit_breaker(breaker = BREAKER)]
fn named_breaker() -> Result<(), Error<()>> {
    Ok(())
}

#[circuit_breaker(BREAKER, catch = |_: &()| true)]
fn unknown_option() -> Result<(), Error<()>> {
    Ok(())
}

fn main() {
    let _ = (no_breaker(), named_breaker(), unknown_option());
}
