//! The layer on a hyper client, against a real hyper server on loopback
//! that counts the requests it receives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lasier_async::State;
use lasier_tower::{
    rejection_response, CircuitBreaker, CircuitBreakerLayer, Error, ServerErrorsAsFailures,
};
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

/// A server on 127.0.0.1 that answers every request with `status` and the
/// body `boom`, and counts them.
struct Server {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Server {
    async fn start(status: StatusCode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                let service = service_fn(move |_: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut response = Response::new(Full::new(Bytes::from_static(b"boom")));
                    *response.status_mut() = status;
                    async move { Ok::<_, Infallible>(response) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Self { addr, hits }
    }

    fn uri(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An address on loopback where nothing listens: connecting is refused.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/")
}

fn get(uri: &str) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn breaker(name: &str, max_failures: u64) -> CircuitBreaker {
    CircuitBreaker::builder(name)
        .max_failures(max_failures)
        .circuit_timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn server_errors_open_the_circuit_and_rejections_never_reach_the_server() {
    let server = Server::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let mut service = ServiceBuilder::new()
        .layer(
            CircuitBreakerLayer::new(breaker("tower-http-5xx", 3))
                .classifier(ServerErrorsAsFailures),
        )
        .service(client());

    for _ in 0..3 {
        // A 5xx is a response for the caller, body and all.
        let response = service
            .ready()
            .await
            .unwrap()
            .call(get(&server.uri()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "boom");
    }
    assert_eq!(server.hits(), 3);
    assert_eq!(service.breaker().state().await.unwrap(), State::Open);

    for _ in 0..5 {
        let error = service
            .ready()
            .await
            .unwrap()
            .call(get(&server.uri()))
            .await
            .unwrap_err();
        assert!(error.is_open(), "{error:?}");

        let response: Response<Empty<Bytes>> = rejection_response(&error).unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry_after: u64 = response.headers()[RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=30).contains(&retry_after),
            "Retry-After: {retry_after}"
        );
    }
    assert_eq!(server.hits(), 3, "a rejected request reached the server");
}

#[tokio::test]
async fn the_default_classifier_counts_errors_and_not_error_responses() {
    let server = Server::start(StatusCode::SERVICE_UNAVAILABLE).await;
    let dead = closed_port();
    let mut service = CircuitBreakerLayer::new(breaker("tower-http-errors", 2)).layer(client());

    // Error responses are successes for the default classifier.
    for _ in 0..5 {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(get(&server.uri()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(server.hits(), 5);
    assert_eq!(service.breaker().state().await.unwrap(), State::Closed);

    // Errors are failures: two refused connections open the circuit.
    for _ in 0..2 {
        match service.ready().await.unwrap().call(get(&dead)).await {
            Err(Error::Inner(error)) => assert!(error.is_connect(), "{error:?}"),
            other => panic!("expected a connection error, got {other:?}"),
        }
    }
    let error = service
        .ready()
        .await
        .unwrap()
        .call(get(&server.uri()))
        .await
        .unwrap_err();
    assert!(error.is_open(), "{error:?}");
    assert_eq!(server.hits(), 5, "a rejected request reached the server");
}

#[tokio::test]
async fn successful_responses_keep_the_circuit_closed() {
    let server = Server::start(StatusCode::OK).await;
    let mut service = ServiceBuilder::new()
        .layer(
            CircuitBreakerLayer::new(breaker("tower-http-ok", 1))
                .classifier(ServerErrorsAsFailures),
        )
        .service(client());

    for _ in 0..10 {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(get(&server.uri()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(server.hits(), 10);
    assert_eq!(service.breaker().state().await.unwrap(), State::Closed);
}
