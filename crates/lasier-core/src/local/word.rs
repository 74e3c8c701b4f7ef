//! The phase of a [`LocalCircuit`](super::LocalCircuit) in one 64-bit word:
//! a tag (3 bits) and what the phase needs (an open deadline; a half-open
//! lease's episode, its permits and passes; a closed period's number), so
//! that every change of phase is one compare-and-swap.

use crate::state::{Phase, State, Transition, EPISODE_MASK};

const TAG_SHIFT: u32 = 61;
const TAG_CLOSED: u64 = 0;
const TAG_OPEN: u64 = 1;
const TAG_HALF_OPEN: u64 = 2;
const TAG_FORCED_OPEN: u64 = 3;
const TAG_DISABLED: u64 = 4;
const LOW_61: u64 = (1 << TAG_SHIFT) - 1;
/// The first closed word; later ones carry the number of the closed period
/// (see `LocalCircuit::word`).
pub(super) const CLOSED_WORD: u64 = TAG_CLOSED << TAG_SHIFT;
pub(super) const DISABLED_WORD: u64 = TAG_DISABLED << TAG_SHIFT;

pub(super) fn encode(phase: Phase) -> u64 {
    match phase {
        Phase::Closed => CLOSED_WORD,
        Phase::Open { until } => (TAG_OPEN << TAG_SHIFT) | until.min(LOW_61),
        Phase::HalfOpen {
            episode,
            taken,
            passed,
            lease_until: _,
        } => {
            (TAG_HALF_OPEN << TAG_SHIFT)
                | (u64::from(episode & EPISODE_MASK) << 32)
                | (u64::from(taken) << 16)
                | u64::from(passed)
        }
        Phase::ForcedOpen => TAG_FORCED_OPEN << TAG_SHIFT,
        Phase::Disabled => DISABLED_WORD,
    }
}

pub(super) fn decode(word: u64) -> Phase {
    match word >> TAG_SHIFT {
        TAG_OPEN => Phase::Open {
            until: word & LOW_61,
        },
        // The lease's end is kept beside the word (see `LocalCircuit::lease`);
        // `LocalCircuit::phase_of` fills it in.
        TAG_HALF_OPEN => Phase::HalfOpen {
            episode: ((word >> 32) as u32) & EPISODE_MASK,
            taken: (word >> 16) as u16,
            passed: word as u16,
            lease_until: u64::MAX,
        },
        TAG_FORCED_OPEN => Phase::ForcedOpen,
        TAG_DISABLED => Phase::Disabled,
        _ => Phase::Closed,
    }
}

pub(super) fn is_closed_word(word: u64) -> bool {
    word >> TAG_SHIFT == TAG_CLOSED
}

/// Whether going from `from` to `to` starts a lease on trial permits.
pub(super) fn starts_lease(from: Phase, to: Phase) -> bool {
    match (from, to) {
        (Phase::HalfOpen { episode: a, .. }, Phase::HalfOpen { episode: b, .. }) => a != b,
        (_, Phase::HalfOpen { .. }) => true,
        _ => false,
    }
}

/// The change of state from `from` to `to`, if the state differs.
pub(super) fn transition(from: Phase, to: Phase) -> Option<Transition> {
    let (from, to) = (stored_state(from), stored_state(to));
    (from != to).then_some(Transition { from, to })
}

/// The state a phase was stored as, whatever the time.
pub(super) fn stored_state(phase: Phase) -> State {
    match phase {
        Phase::Closed => State::Closed,
        Phase::Open { .. } => State::Open,
        Phase::HalfOpen { .. } => State::HalfOpen,
        Phase::ForcedOpen => State::ForcedOpen,
        Phase::Disabled => State::Disabled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip_through_their_encoding() {
        for phase in [
            Phase::Closed,
            Phase::Open { until: 0 },
            Phase::Open { until: LOW_61 },
            Phase::HalfOpen {
                episode: EPISODE_MASK,
                taken: u16::MAX,
                passed: u16::MAX,
                lease_until: u64::MAX,
            },
            Phase::HalfOpen {
                episode: 0,
                taken: 0,
                passed: 1,
                lease_until: u64::MAX,
            },
            Phase::ForcedOpen,
            Phase::Disabled,
        ] {
            assert_eq!(decode(encode(phase)), phase);
        }
    }
}
