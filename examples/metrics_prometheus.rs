//! The breakers' series in Prometheus' text format, served on `/metrics`.
//!
//! With the feature `metrics`, every breaker records its series in the
//! `metrics` facade; any exporter publishes them. Here the Prometheus
//! recorder, served by a few lines of std's `TcpListener` (in a service,
//! use your HTTP framework's route, or the exporter's own listener).
//!
//! `cargo run -p lasier --features metrics --example metrics_prometheus`
//! scrapes itself once and prints what Prometheus would read; add
//! `-- --serve` to keep serving on `LASIER_METRICS_ADDR` (default
//! 127.0.0.1:9464) for a real Prometheus.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use lasier::sync::CircuitBreaker;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Installed before any breaker is built: each registers its series then.
    let recorder = PrometheusBuilder::new().install_recorder()?;

    let payments = CircuitBreaker::builder("payments")
        .percentage_failures(50, 4)
        .circuit_timeout(Duration::from_secs(30))
        .slow_call_duration(Duration::from_millis(200))
        .build()?;
    for call in 0..8 {
        let _ = payments.call(|| {
            if call % 2 == 0 {
                Ok(())
            } else {
                Err("declined")
            }
        });
    }
    // the failure rate is refreshed by metrics() (and by each sync in sync
    // mode): a health endpoint or a periodic task reads it
    let figures = payments.metrics();
    println!("payments: {:?}, {:?}", figures.state, figures.counts);

    let serve = std::env::args().any(|arg| arg == "--serve");
    let addr = std::env::var("LASIER_METRICS_ADDR").unwrap_or_else(|_| {
        if serve {
            "127.0.0.1:9464"
        } else {
            "127.0.0.1:0"
        }
        .to_owned()
    });
    let listener = TcpListener::bind(&addr)?;
    let url = format!("http://{}/metrics", listener.local_addr()?);
    if serve {
        println!("serving {url}");
        for stream in listener.incoming() {
            let _ = respond(stream?, &recorder);
        }
        return Ok(());
    }
    let server = std::thread::spawn(move || respond(listener.accept()?.0, &recorder));
    println!("GET {url}\n{}", scrape(&url)?);
    server.join().map_err(|_| "the server panicked")??;
    Ok(())
}

/// Answers one HTTP request with the recorder's text.
fn respond(stream: TcpStream, recorder: &PrometheusHandle) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // the request line and headers, up to the empty line
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let body = recorder.render();
    write!(
        reader.get_mut(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// GETs `url` (http://host:port/path) and returns the body.
fn scrape(url: &str) -> std::io::Result<String> {
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = TcpStream::connect(host)?;
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned()))
}
