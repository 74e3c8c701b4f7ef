use lasier_macros::circuit_breaker;
use lasier_sync::CircuitBreaker;

static BREAKER: std::sync::LazyLock<CircuitBreaker> =
    std::sync::LazyLock::new(|| CircuitBreaker::builder("ui").build().unwrap());

#[circuit_breaker(BREAKER)]
struct Client {
    url: String,
}

fn main() {
    let _ = Client { url: String::new() }.url;
}
