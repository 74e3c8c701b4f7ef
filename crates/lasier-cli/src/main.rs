//! `lasier`: list, watch and steer the circuits of the lasier circuit
//! breaker that live in Redis or in a Redis Cluster.
//!
//! ```text
//! lasier --url redis://:secret@10.0.0.5:6379 list
//! lasier status payments --json
//! lasier watch                       # the table, refreshed every second, until Ctrl-C
//! lasier open payments               # force open, fleet-wide (asks to confirm)
//! lasier close payments --yes        # close it again, counters emptied
//! lasier disable payments            # let every call pass, still counting
//! lasier enable payments             # end the disable
//! lasier reset payments              # delete the circuit's keys
//! ```
//!
//! # The store
//!
//! `--url` names the Redis server (`redis://[[user]:password@]host[:port][/db]`,
//! credentials percent-encoded). Given several times, the URLs are the seed
//! nodes of a Redis Cluster; one URL of a cluster node is taken as the
//! cluster too. Without `--url`, the environment variable
//! `LASIER_REDIS_URL` is read (several seed nodes separated by commas).
//! Every Redis command has the `--timeout` (default 1 s). `rediss://` (TLS)
//! is not supported yet.
//!
//! # Commands
//!
//! * `list`: a table of every circuit found, with its state, the failures
//!   and requests of its window, the time it stays open, the half-open
//!   trial permits taken, the mode set by hand, and when its breaker last
//!   registered.
//! * `status NAME`: the same for one circuit, with its registration.
//! * `watch`: `list`'s table refreshed in place (ANSI clear and cursor
//!   home, when stdout is a terminal) every `--interval` (1 s) until
//!   Ctrl-C. With `--json`, one JSON document per refresh, one per line.
//! * `open NAME`: force the circuit open (every breaker sharing it rejects
//!   every call until `close`). Works on a name nothing has registered or
//!   written yet (with a warning), so an operator can isolate a
//!   dependency before the services that call it start.
//! * `close NAME`: close the circuit and empty its counters (ends a forced
//!   open or a disable too).
//! * `disable NAME`: let every call pass, still counting, never opening
//!   (on a name not known yet too, with a warning).
//! * `enable NAME`: end a disable (the circuit closes); does nothing to a
//!   circuit that is not disabled.
//! * `reset NAME`: delete the circuit's keys.
//!
//! The changes are the breakers' own steps (`force_open()`,
//! `force_close()`, `disable()`, `reset()`), so breakers in sync mode hear
//! of them at once through the store's push. Each asks to confirm on
//! stdin unless given `--yes`; without a terminal on stdin and without
//! `--yes`, it refuses (exit code 4).
//!
//! `list` and `status` print JSON with `--json`: `list` an object
//! `{"circuits": [...]}`, `status` one circuit, each with the fields
//! `name`, `state` (`closed`, `open`, `half_open`, `forced_open`,
//! `disabled`, or `null` if unreadable), `failures`, `requests`,
//! `open_for_ms`, `half_open_permits_taken`, `half_open_max_calls`,
//! `manual` (`forced_open`, `disabled`), `seen_ms`, `seen_ago_ms`,
//! `registration` (the directory entry), `found_by` and `error`; `null`
//! where unknown.
//!
//! # How circuits are found
//!
//! By `SCAN` (never `KEYS`), on every master of a cluster, of the keys
//! `circuit_*` (the open flag, which Python `lasier` writes too),
//! `lasier:mode:*`, `lasier:half_open:*` and `lasier:circuit:*` (the
//! directory where breakers register, with their rule and timing). A
//! circuit that has none of these (closed, never set by hand, not
//! registered: only its failure counter, whose key is its bare name)
//! cannot be told from any other key, and is not listed; `status NAME`
//! and the commands that change a circuit still find it by name. A key
//! of another application that happens to start with `circuit_` is
//! listed as a circuit.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | usage or configuration error (arguments, URL, a cluster name without a hash tag) |
//! | 2 | the store cannot be reached, or answered with an error |
//! | 3 | no circuit of that name: no keys and no directory entry |
//! | 4 | the change was not confirmed |
//!
//! Every failure is one line on stderr, `lasier: ...`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod directory;
mod error;
mod store;
mod view;

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};
use lasier_core::{Manual, State};

use crate::error::{CliError, Exit};
use crate::store::{Inspection, Store};
use crate::view::CircuitView;

/// The environment variable read when `--url` is not given.
const URL_VAR: &str = "LASIER_REDIS_URL";

const AFTER_HELP: &str = "\
The store: --url redis://[[user]:password@]host[:port][/db]; several --url are the \
seed nodes of a Redis Cluster. Without --url, LASIER_REDIS_URL is read (seed nodes \
separated by commas).

Exit codes:
  0  done
  1  usage or configuration error
  2  the store cannot be reached, or answered with an error
  3  no circuit of that name (no keys, no directory entry)
  4  the change was not confirmed";

/// List, watch and steer lasier circuit breakers in Redis.
#[derive(Debug, Parser)]
#[command(name = "lasier", version, after_help = AFTER_HELP)]
struct Cli {
    /// The Redis server's URL; several: a Redis Cluster's seed nodes
    /// [default: $LASIER_REDIS_URL]
    #[arg(long = "url", global = true, value_name = "URL")]
    urls: Vec<String>,

    /// How long each Redis command may take (e.g. 500ms, 2s)
    #[arg(long, global = true, default_value = "1s", value_parser = parse_duration)]
    timeout: Duration,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every circuit in the store: state, failures/requests, time left
    /// open, half-open permits taken, manual mode, last seen
    List {
        /// Print JSON: {"circuits": [...]}
        #[arg(long)]
        json: bool,
    },
    /// One circuit, with its registration (exit code 3 if there is none)
    Status {
        /// The circuit's (breaker's) name
        name: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// The list, refreshed in place until Ctrl-C
    Watch {
        /// One JSON document per refresh, one per line, instead of the table
        #[arg(long)]
        json: bool,
        /// Time between refreshes
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
        /// Stop after this many refreshes (for tests)
        #[arg(long, hide = true)]
        count: Option<u64>,
    },
    /// Force a circuit open: every breaker sharing it rejects every call
    /// until `close`. Works on a name not known yet
    Open(Change),
    /// Close a circuit and empty its counters (ends a forced open or a
    /// disable)
    Close(Change),
    /// Let every call pass, still counting, never opening, until `enable`.
    /// Works on a name not known yet
    Disable(Change),
    /// End a disable: the circuit closes, its counters emptied
    Enable(Change),
    /// Delete the circuit's keys
    Reset(Change),
}

#[derive(Debug, Args)]
struct Change {
    /// The circuit's (breaker's) name
    name: String,
    /// Do not ask to confirm
    #[arg(short = 'y', long)]
    yes: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Exit::Usage.code()
            } else {
                Exit::Ok.code()
            });
        }
    };
    match run(cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "lasier: {e}");
            ExitCode::from(e.exit.code())
        }
    }
}

fn run(cli: Cli) -> Result<Exit, CliError> {
    let urls = if cli.urls.is_empty() {
        std::env::var(URL_VAR)
            .unwrap_or_default()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    } else {
        cli.urls
    };
    if urls.is_empty() {
        return Err(CliError::usage(format!(
            "no store: give --url redis://host:port or set {URL_VAR}"
        )));
    }
    let mut store = Store::connect(&urls, cli.timeout)?;
    match cli.command {
        Command::List { json } => {
            let views = list(&mut store)?;
            if json {
                print_json(&Listing { circuits: &views }, true)?;
            } else {
                print(&view::table(&views))?;
            }
            Ok(Exit::Ok)
        }
        Command::Status { name, json } => {
            let inspection = store.inspect(&name, BTreeSet::new())?;
            if !inspection.exists() {
                return Err(not_found(&name, &store));
            }
            let view = CircuitView::new(inspection, SystemTime::now());
            if json {
                print_json(&view, true)?;
            } else {
                print(&view.details())?;
            }
            Ok(Exit::Ok)
        }
        Command::Watch {
            json,
            interval,
            count,
        } => watch(&mut store, (&urls, cli.timeout), json, interval, count),
        Command::Open(change) => steer(&mut store, Action::Open, change),
        Command::Close(change) => steer(&mut store, Action::Close, change),
        Command::Disable(change) => steer(&mut store, Action::Disable, change),
        Command::Enable(change) => steer(&mut store, Action::Enable, change),
        Command::Reset(change) => steer(&mut store, Action::Reset, change),
    }
}

/// `list --json`: every circuit found, by name.
#[derive(Debug, serde::Serialize)]
struct Listing<'a> {
    circuits: &'a [CircuitView],
}

/// Every circuit found, by name.
fn list(store: &mut Store) -> Result<Vec<CircuitView>, CliError> {
    let names = store.discover()?;
    let mut views = Vec::with_capacity(names.len());
    for (name, found) in names {
        let inspection = store.inspect(&name, found)?;
        views.push(CircuitView::new(inspection, SystemTime::now()));
    }
    Ok(views)
}

/// `list` every `interval`; a refresh that fails is said on stderr, and
/// the next one starts from a new connection (the store may be back).
fn watch(
    store: &mut Store,
    (urls, timeout): (&[String], Duration),
    json: bool,
    interval: Duration,
    count: Option<u64>,
) -> Result<Exit, CliError> {
    let in_place = !json && std::io::stdout().is_terminal();
    let mut refreshes = 0_u64;
    loop {
        let result = list(store);
        refreshes += 1;
        let last = count.is_some_and(|n| refreshes >= n);
        match &result {
            Ok(views) if json => print_json(&Listing { circuits: views }, false)?,
            Ok(views) => {
                let mut screen = String::new();
                if in_place {
                    // Cursor home, clear the screen.
                    screen.push_str("\x1b[H\x1b[2J");
                }
                screen.push_str(&format!(
                    "every {}, Ctrl-C to stop\n\n",
                    view::duration(interval)
                ));
                screen.push_str(&view::table(views));
                if !in_place {
                    screen.push('\n');
                }
                print(&screen)?;
            }
            // The last one's error is the command's.
            Err(_) if last => {}
            Err(e) => {
                if in_place {
                    print("\x1b[H\x1b[2J")?;
                }
                let _ = writeln!(
                    std::io::stderr(),
                    "lasier: {e} (trying again in {})",
                    view::duration(interval)
                );
            }
        }
        if last {
            return result.map(|_| Exit::Ok);
        }
        std::thread::sleep(interval);
        if result.is_err() {
            if let Ok(again) = Store::connect(urls, timeout) {
                *store = again;
            }
        }
    }
}

/// A change made by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Open,
    Close,
    Disable,
    Enable,
    Reset,
}

fn steer(store: &mut Store, action: Action, change: Change) -> Result<Exit, CliError> {
    let name = change.name.as_str();
    if name.is_empty() {
        return Err(CliError::usage("the circuit name must not be empty"));
    }
    let before = store.inspect(name, BTreeSet::new())?;
    let circuit = directory::circuit_for(name, before.registration.as_ref())
        .map_err(|e| CliError::usage(format!("{name:?}: {e}")))?;
    store.check(&circuit)?;
    let now = describe_state(&before, "not in the store");
    if !before.exists() {
        let until = match action {
            Action::Open => "forcing it open anyway: breakers of that name will reject every call",
            Action::Disable => {
                "disabling it anyway: breakers of that name will let every call pass"
            }
            // Nothing to close, enable or delete.
            _ => return Err(not_found(name, store)),
        };
        let undo = if action == Action::Open {
            "close"
        } else {
            "enable"
        };
        let _ = writeln!(
            std::io::stderr(),
            "lasier: warning: no circuit named {name:?} in {store:?} yet (no keys, no \
             registration); {until} until `lasier {undo} {name}`"
        );
    }
    if action == Action::Enable && before.mode.as_deref().map(str::trim) != Some("2") {
        print(&format!("{name}: not disabled ({now}); nothing changed\n"))?;
        return Ok(Exit::Ok);
    }
    if !change.yes {
        let question = match action {
            Action::Open => format!(
                "Force {name:?} open (now {now})? Every breaker sharing it will reject \
                 every call until `lasier close {name}`."
            ),
            Action::Close => format!(
                "Close {name:?} (now {now})? Its counters are emptied and calls pass again."
            ),
            Action::Disable => format!(
                "Disable {name:?} (now {now})? Every call will pass, counted but never \
                 opening the circuit, until `lasier enable {name}`."
            ),
            Action::Enable => format!(
                "Enable {name:?} again (now {now})? It closes with empty counters and \
                 opens again when its rule says so."
            ),
            Action::Reset => {
                format!("Reset {name:?} (now {now})? Every key of the circuit is deleted.")
            }
        };
        confirm(&question)?;
    }
    match action {
        Action::Open => store.set_manual(&circuit, Manual::ForceOpen).map(drop)?,
        Action::Close | Action::Enable => store.set_manual(&circuit, Manual::Close).map(drop)?,
        Action::Disable => store.set_manual(&circuit, Manual::Disable).map(drop)?,
        Action::Reset => store.reset(&circuit)?,
    }
    let after = store.inspect(name, BTreeSet::new())?;
    let done = match action {
        Action::Reset => "reset, its keys deleted",
        Action::Enable => "enabled",
        _ => "",
    };
    let after = describe_state(&after, "closed");
    let line = if done.is_empty() {
        format!("{name}: {after} (was {now})\n")
    } else {
        format!("{name}: {done}; now {after} (was {now})\n")
    };
    print(&line)?;
    Ok(Exit::Ok)
}

/// The state for a sentence: `closed`, `forced open`, ...; `absent` for
/// a circuit with nothing in the store.
fn describe_state(inspection: &Inspection, absent: &str) -> String {
    match &inspection.state {
        Ok(State::Closed) if !inspection.exists() => String::from(absent),
        Ok(state) => state.to_string(),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// Asks `question` on the terminal; refuses without one.
fn confirm(question: &str) -> Result<(), CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::new(
            Exit::Refused,
            "not confirmed: stdin is not a terminal, so the tool cannot ask; pass --yes \
             to confirm. Nothing changed",
        ));
    }
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{question} [y/N] ");
    let _ = stderr.flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|e| {
        CliError::new(
            Exit::Refused,
            format!("not confirmed ({e}); nothing changed"),
        )
    })?;
    if matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::new(
            Exit::Refused,
            "not confirmed; nothing changed",
        ))
    }
}

fn not_found(name: &str, store: &Store) -> CliError {
    CliError::new(
        Exit::NotFound,
        format!("no circuit named {name:?} in {store:?} (no keys, no directory entry)"),
    )
}

/// Prints to stdout; a closed pipe (`lasier list | head`) is no error.
fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::usage(format!("cannot write the output: {e}")))
        }
        _ => Ok(()),
    }
}

fn print_json(value: &impl serde::Serialize, pretty: bool) -> Result<(), CliError> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .map_err(|e| CliError::usage(format!("cannot write JSON: {e}")))?;
    print(&format!("{text}\n"))
}

/// `500ms`, `2s`, `1.5s`, `1m`, or a number of milliseconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "ms"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 2s)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1_000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 2s)"))?;
    if duration < Duration::from_millis(1) || duration > Duration::from_secs(86_400) {
        return Err(format!("{text:?}: from 1ms to 24 hours"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
