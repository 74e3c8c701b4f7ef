use lasier_macros::circuit_breaker;
use lasier_sync::CircuitBreaker;

static BREAKER: std::sync::LazyLock<CircuitBreaker> =
    std::sync::LazyLock::new(|| CircuitBreaker::builder("ui").build().unwrap());

#[circuit_breaker(BREAKER)]
fn no_return_type() {}

#[circuit_breaker(BREAKER)]
fn returns_a_number() -> u32 {
    1
}

fn main() {
    no_return_type();
    let _ = returns_a_number();
}
