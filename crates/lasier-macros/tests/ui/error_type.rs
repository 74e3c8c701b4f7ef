use lasier_macros::circuit_breaker;
use lasier_sync::CircuitBreaker;

static BREAKER: std::sync::LazyLock<CircuitBreaker> =
    std::sync::LazyLock::new(|| CircuitBreaker::builder("ui").build().unwrap());

#[derive(Debug)]
struct Timeout;

// The breaker's `Error<Timeout>` is missing from the return type.
#[circuit_breaker(BREAKER)]
fn fetch(ready: bool) -> Result<u32, Timeout> {
    if ready {
        Ok(1)
    } else {
        Err(Timeout)
    }
}

fn main() {
    let _ = fetch(true);
}
