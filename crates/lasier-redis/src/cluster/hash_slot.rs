//! Redis Cluster hash slots: the check behind `validate`.
//!
//! A breaker's script touches every key of its circuit, and a cluster runs
//! a script only if all its keys hash to one slot, so a circuit whose keys
//! do not is refused when its breaker is built, with a message that shows
//! the fix (a hash tag). Slots are computed by redis'
//! [`Slot::for_key`](redis::cluster_routing::Slot::for_key).

use lasier_core::{Circuit, ConfigError};
use redis::cluster_routing::Slot;

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// The number of `slot`, for messages (redis keeps it to itself).
fn number(slot: Slot) -> u16 {
    (0..SLOTS)
        .find(|n| Slot::new(*n) == Some(slot))
        .unwrap_or(0)
}

/// The part of `key` that Redis Cluster hashes: what is between the first
/// `{` and the first `}` after it, if that is not empty; else all of it.
fn hashed_part(key: &str) -> &str {
    let Some((_, rest)) = key.split_once('{') else {
        return key;
    };
    match rest.split_once('}') {
        Some((tag, _)) if !tag.is_empty() => tag,
        _ => key,
    }
}

/// A name whose keys all hash on one tag: the name itself in braces, with
/// any braces it has taken out (so that the tag is the first one).
fn tagged(name: &str) -> String {
    let bare: String = name.chars().filter(|c| *c != '{' && *c != '}').collect();
    if bare.is_empty() {
        "{breaker}".to_owned()
    } else {
        format!("{{{bare}}}")
    }
}

/// Checks that every key of `circuit` hashes to one slot, or says how to
/// make it so.
pub(crate) fn validate(circuit: &Circuit) -> Result<(), ConfigError> {
    let keys = circuit.keys();
    let name = circuit.name();
    let home = Slot::for_key(keys.failures());
    // The keys made from the name: all in one slot if the name has a tag.
    let derived = [
        keys.failures(),
        keys.open(),
        keys.trials(),
        keys.trial_lease(),
        keys.trials_passed(),
        keys.mode(),
        keys.openings(),
    ];
    // A sliding window's keys are made from the name too (its buckets on
    // each use, numbered: two numbers stand for all of them).
    let window: Vec<String> = match circuit.window() {
        lasier_core::Window::Sliding { .. } => {
            let name = &**name;
            vec![
                lasier_core::keys::window::seq(name),
                lasier_core::keys::window::now(name),
                lasier_core::keys::window::failures(name, 1),
                lasier_core::keys::window::requests(name, 2),
            ]
        }
        lasier_core::Window::Count { .. } => {
            let name = &**name;
            vec![
                lasier_core::keys::ring::position(name),
                lasier_core::keys::ring::failures(name),
                lasier_core::keys::ring::word(name, 0),
                lasier_core::keys::ring::word(name, 1),
            ]
        }
        _ => Vec::new(),
    }
    .into_iter()
    // (and its entry in the directory of circuits)
    .chain(std::iter::once(lasier_core::directory::key(name)))
    .collect();
    let strays: Vec<(&str, Slot)> = derived
        .iter()
        .copied()
        .chain(window.iter().map(String::as_str))
        .map(|key| (key, Slot::for_key(key)))
        .filter(|(_, slot)| *slot != home)
        .collect();
    if !strays.is_empty() {
        let shown: Vec<String> = std::iter::once((keys.failures(), home))
            .chain(strays.iter().copied())
            .take(3)
            .map(|(key, slot)| format!("{key:?} in slot {}", number(slot)))
            .collect();
        return Err(ConfigError::Invalid(format!(
            "breaker {name:?}: on a Redis Cluster all of a breaker's keys must hash to one slot, \
             and its keys do not ({}, ...); use a hash tag: name it {:?}, so that every key \
             hashes on the part in braces (a Python lasier service sharing the circuit must use \
             the same name)",
            shown.join(", "),
            tagged(name),
        )));
    }
    let requests = keys.requests();
    let slot = Slot::for_key(requests);
    if slot != home {
        let tag = hashed_part(keys.failures());
        let bare: String = requests
            .chars()
            .filter(|c| *c != '{' && *c != '}')
            .collect();
        return Err(ConfigError::Invalid(format!(
            "breaker {name:?}: on a Redis Cluster all of a breaker's keys must hash to one slot, \
             and its request key {requests:?} is in slot {}, its other keys in slot {}; \
             use a hash tag: .request_key({:?})",
            number(slot),
            number(home),
            format!("{{{tag}}}:{bare}"),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tests::circuit;

    #[test]
    fn the_hashed_part_is_the_tag_if_any() {
        for (key, part) in [
            ("", ""),
            ("foo", "foo"),
            ("{user1000}.following", "user1000"),
            ("{}x", "{}x"),
            ("a{}{b}", "a{}{b}"),
            ("x{y", "x{y"),
            ("é{ü}", "ü"),
        ] {
            assert_eq!(hashed_part(key), part, "{key:?}");
            assert_eq!(Slot::for_key(key), Slot::for_key(part), "{key:?}");
        }
        assert_eq!(number(Slot::for_key("123456789")), 0x31C3 % SLOTS);
    }

    #[test]
    fn a_name_with_a_hash_tag_keeps_every_key_in_one_slot() {
        for name in ["{payments}", "svc:{payments}", "{payments}:v2", "a}b{c}"] {
            validate(&circuit(name, None)).unwrap();
        }
        validate(&circuit("{payments}", Some("{payments}:requests"))).unwrap();
    }

    #[test]
    fn a_name_without_a_hash_tag_is_refused_with_the_fix() {
        let error = validate(&circuit("payments", None)).unwrap_err();
        let ConfigError::Invalid(message) = &error else {
            panic!("{error:?}")
        };
        assert!(
            message.contains(r#"use a hash tag: name it "{payments}""#),
            "{message}"
        );
        assert!(message.contains(r#""payments" in slot"#), "{message}");
        // An empty tag is no tag.
        let error = validate(&circuit("{}payments", None)).unwrap_err();
        assert!(
            error.to_string().contains(r#"name it "{payments}""#),
            "{error}"
        );
        // The fix it shows works.
        validate(&circuit(&tagged("{}payments"), None)).unwrap();
        validate(&circuit(&tagged("{}"), None)).unwrap();
    }

    #[test]
    fn a_request_key_elsewhere_is_refused_with_the_fix() {
        let error = validate(&circuit("{payments}", Some("payments_reqs"))).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(r#"use a hash tag: .request_key("{payments}:payments_reqs")"#),
            "{message}"
        );
        validate(&circuit("{payments}", Some("{payments}:payments_reqs"))).unwrap();
    }
}
