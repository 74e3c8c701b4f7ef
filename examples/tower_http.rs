//! A hyper client guarded by `lasier-tower`, against a tiny hyper server on
//! loopback that answers 500 for its first two seconds, then 200.
//!
//! The client sends a request every 250 ms: three 500s open the circuit,
//! the next requests are answered 503 with `Retry-After` without reaching
//! the server, a trial after one second finds the server still failing and
//! reopens the circuit, and the next trial finds it healthy and closes it.
//!
//! Run with `cargo run -p lasier-tower --example tower_http`; it ends by
//! itself after about four seconds.

use std::convert::Infallible;
use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::RETRY_AFTER;
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lasier_tower::{
    rejection_response, CircuitBreaker, CircuitBreakerLayer, ServerErrorsAsFailures,
};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};

const FAILING_FOR: Duration = Duration::from_secs(2);
const REQUESTS: u32 = 16;
const INTERVAL: Duration = Duration::from_millis(250);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let hits = Arc::new(AtomicUsize::new(0));
    let uri = format!("http://{}/stock", start_server(Arc::clone(&hits)).await?);

    let breaker = CircuitBreaker::builder("inventory-api")
        .max_failures(3)
        .circuit_timeout(Duration::from_secs(1))
        .build()?;
    let mut client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(ServerErrorsAsFailures))
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());

    let start = Instant::now();
    for n in 1..=REQUESTS {
        let request = Request::get(uri.as_str()).body(Empty::new())?;
        let (status, retry_after, note) = match client.ready().await?.call(request).await {
            Ok(response) => (response.status(), None, "from the server"),
            // The breaker did not call the server: answer as a proxy would.
            Err(error) => match rejection_response::<_, ()>(&error) {
                Some(response) => (
                    response.status(),
                    response.headers().get(RETRY_AFTER).cloned(),
                    "circuit open, the server was not called",
                ),
                None => return Err(error.into()),
            },
        };
        let retry_after = retry_after
            .and_then(|value| value.to_str().ok().map(|s| format!(", Retry-After: {s}")))
            .unwrap_or_default();
        println!(
            "#{n:<2} {:>5.2}s  {status}{retry_after}  ({note}; circuit now {})",
            start.elapsed().as_secs_f64(),
            breaker.state().await?,
        );
        tokio::time::sleep(INTERVAL).await;
    }
    println!(
        "the server received {} of {REQUESTS} requests",
        hits.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Starts the server on 127.0.0.1 and returns its address: 500 Internal
/// Server Error for `FAILING_FOR` after it starts, then 200 OK.
async fn start_server(hits: Arc<AtomicUsize>) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = Arc::clone(&hits);
            let service = service_fn(move |_: Request<Incoming>| {
                hits.fetch_add(1, Ordering::SeqCst);
                let status = if started.elapsed() < FAILING_FOR {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                let mut response =
                    Response::new(Full::new(Bytes::from(status.as_str().to_owned())));
                *response.status_mut() = status;
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Ok(addr)
}
