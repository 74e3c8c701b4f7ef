//! What the read commands show: one [`CircuitView`] per circuit, as a
//! table row or as JSON.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lasier_core::State;
use serde::Serialize;

use crate::directory::Registration;
use crate::store::{Found, Inspection};

/// One circuit, as `list`, `status` and `watch` show it. Its JSON form is
/// the documented output of `--json` (a field the tool cannot know is
/// `null`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CircuitView {
    /// The circuit's name.
    pub(crate) name: String,
    /// `closed`, `open`, `half_open`, `forced_open` or `disabled`; `null`
    /// if it could not be read (see `error`).
    pub(crate) state: Option<&'static str>,
    /// Failures in the current window.
    pub(crate) failures: Option<u64>,
    /// Requests in the current window (`null` under a rule that does not
    /// count them).
    pub(crate) requests: Option<u64>,
    /// How long the circuit stays open, if open for a time (`null` when
    /// not open, or open until closed by hand).
    pub(crate) open_for_ms: Option<u64>,
    /// Trial permits taken under the current half-open lease.
    pub(crate) half_open_permits_taken: Option<u32>,
    /// Trial permits per lease, where the directory says.
    pub(crate) half_open_max_calls: Option<u32>,
    /// `forced_open` or `disabled` when set by hand; `unknown` for a mode
    /// value no breaker writes.
    pub(crate) manual: Option<&'static str>,
    /// When the breaker last registered (unix epoch milliseconds).
    pub(crate) seen_ms: Option<u64>,
    /// How long ago that was, by this machine's clock.
    pub(crate) seen_ago_ms: Option<u64>,
    /// The directory entry, if the breaker registered.
    pub(crate) registration: Option<Registration>,
    /// Which keys showed the circuit.
    pub(crate) found_by: Vec<Found>,
    /// Why something could not be read, if so.
    pub(crate) error: Option<String>,
}

/// The JSON name of a state.
pub(crate) fn state_name(state: State) -> &'static str {
    match state {
        State::Closed => "closed",
        State::Open => "open",
        State::HalfOpen => "half_open",
        State::ForcedOpen => "forced_open",
        State::Disabled => "disabled",
        _ => "unknown",
    }
}

impl CircuitView {
    /// The view of what was read, at `now`.
    pub(crate) fn new(inspection: Inspection, now: SystemTime) -> Self {
        let mut errors = Vec::new();
        let state = match &inspection.state {
            Ok(state) => Some(*state),
            Err(e) => {
                errors.push(format!("state: {e}"));
                None
            }
        };
        let (failures, requests) = match &inspection.counts {
            Some(Ok(counts)) => (
                Some(counts.failures),
                inspection.counts_requests.then_some(counts.requests),
            ),
            Some(Err(e)) => {
                if state.is_some() {
                    errors.push(format!("counts: {e}"));
                }
                (None, None)
            }
            None => (None, None),
        };
        let open_for_ms = match (state, inspection.open_pttl_ms) {
            (Some(State::Open), Some(ms)) if ms > 0 => u64::try_from(ms).ok(),
            _ => None,
        };
        let half_open_permits_taken = match (state, inspection.permits_taken) {
            (_, Some(taken)) if taken != u32::MAX => Some(taken),
            (Some(State::HalfOpen), None) => Some(0),
            _ => None,
        };
        let manual = inspection.mode.as_deref().map(|mode| match mode.trim() {
            "1" => "forced_open",
            "2" => "disabled",
            _ => "unknown",
        });
        let registration = inspection.registration;
        let seen_ms = registration.as_ref().and_then(|r| r.seen_ms);
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            name: inspection.name,
            state: state.map(state_name),
            failures,
            requests,
            open_for_ms,
            half_open_permits_taken,
            half_open_max_calls: registration.as_ref().and_then(|r| r.half_open_max_calls),
            manual,
            seen_ms,
            seen_ago_ms: seen_ms.map(|seen| now_ms.saturating_sub(seen)),
            registration,
            found_by: inspection.found.into_iter().collect(),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    /// The row of the table, one cell per [`HEADERS`] column.
    fn row(&self) -> [String; 7] {
        let dash = || String::from("-");
        let state = match self.state {
            Some("half_open") => String::from("half-open"),
            Some("forced_open") => String::from("forced-open"),
            Some(state) => state.to_owned(),
            None => String::from("error"),
        };
        let counts = match (self.failures, self.requests) {
            (Some(f), Some(r)) => format!("{f}/{r}"),
            (Some(f), None) => format!("{f}/-"),
            _ => dash(),
        };
        let open_for = match (self.state, self.open_for_ms) {
            (_, Some(ms)) => duration(Duration::from_millis(ms)),
            (Some("forced_open"), None) => String::from("until closed"),
            _ => dash(),
        };
        let permits = match (self.half_open_permits_taken, self.half_open_max_calls) {
            (Some(taken), Some(max)) => format!("{taken}/{max}"),
            (Some(taken), None) => taken.to_string(),
            _ => dash(),
        };
        let manual = self.manual.map_or_else(dash, |m| m.replace('_', "-"));
        let seen = self.seen_ago_ms.map_or_else(dash, |ms| {
            format!("{} ago", duration(Duration::from_millis(ms)))
        });
        [
            self.name.clone(),
            state,
            counts,
            open_for,
            permits,
            manual,
            seen,
        ]
    }

    /// `status`' text: the row's values one per line, and the
    /// registration.
    pub(crate) fn details(&self) -> String {
        let [name, state, counts, open_for, permits, manual, seen] = self.row();
        let dash = || String::from("-");
        let mut lines = vec![
            ("name", name),
            ("state", state),
            ("failures/requests", counts),
            ("open for", open_for),
            ("half-open permits", permits),
            ("manual", manual),
            ("last seen", seen),
        ];
        match self.registration.as_ref() {
            Some(r) => lines.extend([
                ("rule", r.rule.clone().unwrap_or_else(dash)),
                ("window", r.window.clone().unwrap_or_else(dash)),
                (
                    "failure timeout",
                    millis(r.failure_timeout_ms).unwrap_or_else(dash),
                ),
                (
                    "circuit timeout",
                    millis(r.circuit_timeout_ms).unwrap_or_else(dash),
                ),
                (
                    "half-open calls",
                    r.half_open_max_calls.map_or_else(dash, |n| n.to_string()),
                ),
                (
                    "to close",
                    r.half_open_successes.map_or_else(dash, |n| n.to_string()),
                ),
                ("request key", r.request_key.clone().unwrap_or_else(dash)),
            ]),
            None => lines.push(("registration", String::from("none"))),
        }
        if let Some(error) = &self.error {
            lines.push(("error", error.clone()));
        }
        let mut out = String::new();
        for (what, value) in lines {
            out.push_str(&format!("{:<19}{value}\n", format!("{what}:")));
        }
        out
    }
}

/// A number of milliseconds for people.
fn millis(ms: Option<u64>) -> Option<String> {
    ms.map(|ms| duration(Duration::from_millis(ms)))
}

/// The table's columns.
pub(crate) const HEADERS: [&str; 7] = [
    "NAME",
    "STATE",
    "FAIL/REQ",
    "OPEN FOR",
    "HALF-OPEN",
    "MANUAL",
    "LAST SEEN",
];

/// The table of `views`, columns as wide as their widest cell.
pub(crate) fn table(views: &[CircuitView]) -> String {
    let rows: Vec<[String; 7]> = views.iter().map(CircuitView::row).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row.iter()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let width = widths.get(i).copied().unwrap_or(0);
            text.push_str(&format!("{cell:<width$}"));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut HEADERS.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    if views.is_empty() {
        out.push_str("(no circuits found)\n");
    }
    out
}

/// A duration for people: `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    match s {
        _ if ms < 1_000 => format!("{ms}ms"),
        0..=59 => format!("{}.{}s", s, (ms % 1_000) / 100),
        60..=3_599 => format!("{}m{:02}s", s / 60, s % 60),
        3_600..=86_399 => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use lasier_core::Counts;

    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(duration(Duration::from_secs(7_380)), "2h03m");
        assert_eq!(duration(Duration::from_secs(273_600)), "3d04h");
    }

    fn inspection(state: Result<State, String>) -> Inspection {
        Inspection {
            name: "payments".into(),
            found: BTreeSet::from([Found::OpenFlag]),
            registration: None,
            state,
            counts: Some(Ok(Counts::new(3, 10))),
            counts_requests: true,
            open_pttl_ms: Some(12_345),
            permits_taken: None,
            mode: None,
        }
    }

    #[test]
    fn an_open_circuit_shows_its_time_left() {
        let view = CircuitView::new(inspection(Ok(State::Open)), UNIX_EPOCH);
        assert_eq!(view.state, Some("open"));
        assert_eq!(view.open_for_ms, Some(12_345));
        let text = table(&[view]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("NAME      STATE  FAIL/REQ  OPEN FOR"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("payments  open   3/10      12.3s"),
            "{text}"
        );
    }

    #[test]
    fn an_unreadable_state_is_said_in_the_row() {
        let view = CircuitView::new(inspection(Err("corrupt".into())), UNIX_EPOCH);
        assert_eq!(view.state, None);
        assert_eq!(view.error.as_deref(), Some("state: corrupt"));
        assert!(table(&[view]).contains("payments  error"));
    }
}
