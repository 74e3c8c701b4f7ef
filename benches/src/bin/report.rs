//! Prints the figures of the last `cargo bench -p lasier-benches` run as one
//! markdown table, for the README's performance section.
//!
//! ```sh
//! cargo bench -p lasier-benches --bench lasier
//! cargo run -p lasier-benches --bin report
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where criterion writes its results: `$CARGO_TARGET_DIR/criterion`, or
/// `target/criterion` at the workspace root.
fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

/// Every benchmark criterion measured: group -> (function, mean ns, ±ns).
fn results(dir: &Path) -> BTreeMap<String, Vec<(String, f64, f64)>> {
    let mut groups: BTreeMap<String, Vec<(String, f64, f64)>> = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let new = path.join("new");
            if let (Some(bench), Some(estimates)) = (
                read_json(&new.join("benchmark.json")),
                read_json(&new.join("estimates.json")),
            ) {
                let group = bench["group_id"].as_str().unwrap_or("?").to_owned();
                let function = match (bench["function_id"].as_str(), bench["value_str"].as_str()) {
                    (Some(f), Some(v)) => format!("{f}, {v}"),
                    (Some(f), None) => f.to_owned(),
                    (None, Some(v)) => v.to_owned(),
                    (None, None) => "?".to_owned(),
                };
                let mean = estimates["mean"]["point_estimate"]
                    .as_f64()
                    .unwrap_or(f64::NAN);
                let err = estimates["mean"]["standard_error"]
                    .as_f64()
                    .unwrap_or(f64::NAN);
                groups.entry(group).or_default().push((function, mean, err));
            } else if path.file_name().is_some_and(|n| n != "report") {
                stack.push(path);
            }
        }
    }
    for rows in groups.values_mut() {
        rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    }
    groups
}

fn format_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.1} ns")
    }
}

/// The CPU model and the number of CPUs, as Linux reports them.
fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cpus} CPUs")
}

/// For each Redis group and case: guarded calls per second with 64 async
/// tasks on one connection, as a multiple of sequential sync calls.
fn print_concurrency(groups: &BTreeMap<String, Vec<(String, f64, f64)>>) {
    let mut lines = Vec::new();
    for (group, rows) in groups.iter().filter(|(g, _)| g.starts_with("redis")) {
        let mean = |mode: &str, case: &str| {
            rows.iter()
                .find(|(f, _, _)| f == &format!("{mode}, {case}"))
                .map(|(_, mean, _)| *mean)
        };
        for case in rows
            .iter()
            .filter_map(|(f, _, _)| f.strip_prefix("sync sequential, "))
        {
            if let (Some(sequential), Some(tasks)) =
                (mean("sync sequential", case), mean("async 64 tasks", case))
            {
                lines.push(format!(
                    "| {group} | {case} | {:.0} | {:.0} | {:.1}x |",
                    1e9 / sequential,
                    1e9 / tasks,
                    sequential / tasks
                ));
            }
        }
    }
    if lines.is_empty() {
        return;
    }
    println!();
    println!("| group | case | sync sequential calls/s | async 64 tasks calls/s | ratio |");
    println!("|---|---|---:|---:|---:|");
    for line in lines {
        println!("{line}");
    }
}

fn main() {
    let dir = criterion_dir();
    let groups = results(&dir);
    if groups.is_empty() {
        eprintln!(
            "no criterion results under {}: run `cargo bench -p lasier-benches --bench lasier` first",
            dir.display()
        );
        std::process::exit(1);
    }
    println!("Machine: {}\n", machine());
    println!("| group | benchmark | time per call | calls per second |");
    println!("|---|---|---:|---:|");
    for (group, rows) in &groups {
        for (function, mean, err) in rows {
            println!(
                "| {group} | {function} | {} ± {} | {:.0} |",
                format_ns(*mean),
                format_ns(*err),
                1e9 / mean
            );
        }
    }
    print_concurrency(&groups);
    for extra in ["lasier-extra.md", "lasier-fleet.md"] {
        if let Ok(text) = fs::read_to_string(dir.join(extra)) {
            println!();
            print!("{text}");
        }
    }
}
