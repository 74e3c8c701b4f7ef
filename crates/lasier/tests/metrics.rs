//! The feature `metrics`: every series, scraped over HTTP from the
//! Prometheus recorder and parsed from its text format, after calls whose
//! durations a manual clock decides.
#![cfg(all(feature = "metrics", feature = "sync"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use lasier::clock::ManualClock;
use lasier::storage::{MemoryStorage, Storage};
use lasier::sync::CircuitBreaker;
use lasier::{StorageError, StorageErrorKind};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Serves the recorder's text on one HTTP request, at a free port; returns
/// the URL.
fn serve_once(handle: metrics_exporter_prometheus::PrometheusHandle) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let body = handle.render();
        write!(
            reader.get_mut(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    url
}

/// `GET url`: the status line and the body.
fn get(url: &str) -> (String, String) {
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The samples of Prometheus' text format: `name{labels sorted}` -> value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                format!("{name}{{{}}}", labels.join(","))
            }
            None => series.to_owned(),
        };
        samples.insert(key, value);
    }
    samples
}

fn down() -> StorageError {
    StorageError::new(StorageErrorKind::Unavailable, "down")
}

/// A store that never answers.
#[derive(Debug)]
struct Down;

impl Storage for Down {
    fn add(&self, _: &str, _: i64, _: Option<Duration>) -> Result<bool, StorageError> {
        Err(down())
    }
    fn set(&self, _: &str, _: i64, _: Option<Duration>) -> Result<(), StorageError> {
        Err(down())
    }
    fn incr(&self, _: &str, _: i64) -> Result<i64, StorageError> {
        Err(down())
    }
    fn get(&self, _: &str) -> Result<Option<i64>, StorageError> {
        Err(down())
    }
    fn expire(&self, _: &str, _: Duration) -> Result<(), StorageError> {
        Err(down())
    }
    fn delete(&self, _: &str) -> Result<(), StorageError> {
        Err(down())
    }
}

#[test]
fn every_series_is_scraped_over_http() {
    let recorder = PrometheusBuilder::new().install_recorder().unwrap();
    let clock = ManualClock::new();
    let payments = CircuitBreaker::builder("payments")
        .storage(MemoryStorage::with_clock(clock.clone()))
        .clock(clock.clone())
        .percentage_failures(50, 4)
        .circuit_timeout(Duration::from_secs(30))
        .slow_call_duration(Duration::from_millis(300))
        .build()
        .unwrap();
    let call = |took_ms: u64, result: Result<(), &'static str>| {
        payments.call_filtered(
            |e: &&str| *e != "not found",
            || {
                clock.advance(Duration::from_millis(took_ms));
                result
            },
        )
    };
    call(100, Ok(())).unwrap();
    call(400, Ok(())).unwrap(); // slow: a failure
    let _ = call(50, Err("not found")); // ignored
    assert_eq!(payments.metrics().counts.failures, 1);
    let _ = call(20, Err("declined"));
    let _ = call(20, Err("declined")); // 3 of 5: open
    assert!(call(1, Ok(())).unwrap_err().is_open());
    assert!(call(1, Ok(())).unwrap_err().is_open());

    let ledger = CircuitBreaker::builder("ledger")
        .storage(Down)
        .max_failures(3)
        .build()
        .unwrap();
    ledger.call(|| Ok::<(), ()>(())).unwrap();

    let (status, body) = get(&serve_once(recorder));
    assert_eq!(status, "HTTP/1.1 200 OK");
    let samples = parse(&body);
    let sample = |key: &str| {
        *samples
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in:\n{body}"))
    };
    let calls = "lasier_circuitbreaker_calls_seconds";
    for (kind, sum) in [
        ("successful", 0.1),
        ("slow", 0.4),
        ("ignored", 0.05),
        ("failed", 0.04),
    ] {
        let labels = format!("{{kind=\"{kind}\",name=\"payments\"}}");
        let count = if kind == "failed" { 2.0 } else { 1.0 };
        assert_eq!(sample(&format!("{calls}_count{labels}")), count, "{kind}");
        assert!(
            (sample(&format!("{calls}_sum{labels}")) - sum).abs() < 1e-9,
            "{kind}"
        );
    }
    let state = |state: &str| {
        sample(&format!(
            "lasier_circuitbreaker_state{{name=\"payments\",state=\"{state}\"}}"
        ))
    };
    assert_eq!(state("open"), 1.0);
    for other in ["closed", "half_open", "forced_open", "disabled"] {
        assert_eq!(state(other), 0.0, "{other}");
    }
    assert_eq!(
        sample("lasier_circuitbreaker_not_permitted_calls_total{name=\"payments\"}"),
        2.0
    );
    // refreshed by metrics(): 1 failure of 3 requests then
    assert!(
        (sample("lasier_circuitbreaker_failure_rate{name=\"payments\"}") - 100.0 / 3.0).abs()
            < 1e-9
    );
    assert_eq!(
        sample("lasier_circuitbreaker_fallback{name=\"ledger\"}"),
        1.0
    );
}
