//! The state machine over a key-value store: the breaker's fused steps
//! written with the six storage primitives, the keys of [`crate::keys`] and
//! their TTLs. They are what [`Steps`](crate::Steps) runs on a storage
//! without fused steps of its own, and what an implementor of
//! [`FusedSteps`](crate::FusedSteps) calls for a step it has nothing better
//! for.
//!
//! Written once, as a macro, and expanded twice: [`blocking`] over
//! [`Storage`](crate::Storage), and (feature `async`) `nonblocking`, with
//! `.await` after each primitive, over `AsyncStorage`. The decisions are
//! the same as the local state machine's ([`crate::state`]); only where the
//! state lives differs. Each step is several primitive calls, so a step of
//! one process can interleave with another's; the README's "Known
//! limitations" says which races remain.

/// Expands to the fused steps for one storage trait.
/// `$($aw)*` is empty for the sync trait and `.await` for the async one.
macro_rules! fused_steps {
    ($Trait:path, $($kw:ident)?, $($aw:tt)*) => {

        use lasier_rules::{Counts, Rule};

        use crate::config::Circuit;
        use crate::error::StorageError;
        use crate::state::{Admission, Manual, Outcome, Permit, Snapshot, State, SyncBatch, Transition};
        use crate::kv::marker;

        /// The mode set by hand.
        #[derive(PartialEq, Eq)]
        enum Mode {
            Normal,
            ForcedOpen,
            Disabled,
        }

        $($kw)? fn mode<S: $Trait + ?Sized>(s: &S, c: &Circuit) -> Result<Mode, StorageError> {
            let key = c.keys().mode();
            match s.get(key) $($aw)* ? {
                None => Ok(Mode::Normal),
                Some(1) => Ok(Mode::ForcedOpen),
                Some(2) => Ok(Mode::Disabled),
                Some(other) => Err(StorageError::corrupt(key, alloc::format!("mode is {other}, expected 1 or 2"))),
            }
        }

        /// Whether the open flag is set (`1`); anything else there is corrupt.
        $($kw)? fn is_open<S: $Trait + ?Sized>(s: &S, c: &Circuit) -> Result<bool, StorageError> {
            let key = c.keys().open();
            match s.get(key) $($aw)* ? {
                None => Ok(false),
                Some(1) => Ok(true),
                Some(other) => Err(StorageError::corrupt(key, alloc::format!("open flag is {other}, expected 1"))),
            }
        }

        fn count(key: &str, value: i64) -> Result<u64, StorageError> {
            u64::try_from(value).map_err(|_| StorageError::corrupt(key, alloc::format!("negative counter {value}")))
        }

        /// A sliding window's bucket number read at `key`: positive, or
        /// corrupt.
        fn bucket_number(key: &str, value: i64) -> Result<i64, StorageError> {
            if value < 1 {
                return Err(StorageError::corrupt(key, alloc::format!("bucket number {value}, expected 1 or more")));
            }
            Ok(value)
        }

        /// The number of the sliding window's current bucket, starting the
        /// next one if none is current (see [`crate::keys::window`]).
        $($kw)? fn current_bucket<S: $Trait + ?Sized>(s: &S, c: &Circuit, bucket: core::time::Duration) -> Result<i64, StorageError> {
            let now_key = crate::keys::window::now(c.name());
            if let Some(n) = s.get(&now_key) $($aw)* ? {
                return bucket_number(&now_key, n);
            }
            let seq_key = crate::keys::window::seq(c.name());
            let next = s.incr(&seq_key, 1) $($aw)* ?;
            // (the numbers outlive the buckets, so none is used twice
            // while a bucket of that number lives)
            s.expire(&seq_key, c.timing().failure_timeout() + bucket) $($aw)* ?;
            if s.add(&now_key, next, Some(bucket)) $($aw)* ? {
                return Ok(next);
            }
            // Another caller started one first: count in theirs.
            match s.get(&now_key) $($aw)* ? {
                Some(n) => bucket_number(&now_key, n),
                None => Ok(next),
            }
        }

        /// Adds `delta` to the bucket counter at `key`, which lives for the
        /// window from its first count.
        $($kw)? fn add_to_bucket<S: $Trait + ?Sized>(s: &S, c: &Circuit, key: &str, delta: i64) -> Result<(), StorageError> {
            let window = c.timing().failure_timeout();
            // (`add` first: an `incr` alone would make it without a TTL)
            s.add(key, 0, Some(window)) $($aw)* ?;
            if s.incr(key, delta) $($aw)* ? == delta {
                // made anew by the `incr` if it expired right after the `add`
                s.expire(key, window) $($aw)* ?;
            }
            Ok(())
        }

        /// The counts of the sliding window's live buckets: the newest
        /// (`last`, or read) and those before it, while they live.
        $($kw)? fn bucket_counts<S: $Trait + ?Sized>(s: &S, c: &Circuit, last: Option<i64>) -> Result<Counts, StorageError> {
            let last = match last {
                Some(last) => last,
                None => {
                    let seq_key = crate::keys::window::seq(c.name());
                    match s.get(&seq_key) $($aw)* ? {
                        Some(n) => bucket_number(&seq_key, n)?,
                        None => return Ok(Counts::default()),
                    }
                }
            };
            let buckets = match c.window() {
                crate::Window::Sliding { buckets } => i64::from(buckets),
                _ => 1,
            };
            let mut counts = Counts::default();
            for n in (last - buckets + 1).max(1)..=last {
                let key = crate::keys::window::failures(c.name(), n);
                counts.failures += count(&key, s.get(&key) $($aw)* ?.unwrap_or(0))?;
                if c.counts_requests() {
                    let key = crate::keys::window::requests(c.name(), n);
                    counts.requests += count(&key, s.get(&key) $($aw)* ?.unwrap_or(0))?;
                }
            }
            Ok(counts)
        }

        /// How long a count window's keys live without a turn of the ring.
        fn ring_retention() -> core::time::Duration {
            crate::state::HALF_OPEN_RETENTION
        }

        /// Writes `len` outcomes, all failures (`failed`) or all successes,
        /// at ring positions `from..from + len` (`len` at most the ring's
        /// `n`); returns how the failures among the ring's bits changed.
        $($kw)? fn write_run<S: $Trait + ?Sized>(
            s: &S,
            c: &Circuit,
            n: i64,
            from: i64,
            len: i64,
            failed: bool,
        ) -> Result<i64, StorageError> {
            const W: i64 = crate::keys::RING_WORD_BITS;
            let mut delta = 0;
            let mut q = from;
            while q < from + len {
                let i = q.rem_euclid(n);
                let j = i / W;
                // This word's bits from `i`, up to its end, the ring's end
                // or the run's end.
                let first = i % W;
                let last = W.min(n - j * W).min(first + (from + len - q));
                let width = last - first;
                let mask = ((1_i64 << width) - 1) << first;
                let key = crate::keys::ring::word(c.name(), j);
                let word = s.get(&key) $($aw)* ?.unwrap_or(0);
                if !(0..1 << W).contains(&word) {
                    return Err(StorageError::corrupt(&key, alloc::format!("ring word {word}")));
                }
                let old = word & mask;
                let new = if failed { mask } else { 0 };
                if old != new {
                    s.add(&key, 0, Some(ring_retention())) $($aw)* ?;
                    s.incr(&key, new - old) $($aw)* ?;
                    delta += i64::from(new.count_ones()) - i64::from(old.count_ones());
                }
                q += width;
            }
            Ok(delta)
        }

        /// Counts `successes` then `failures` (one call's outcome, or a
        /// sync's batch) in the ring of `n`; returns its counts.
        $($kw)? fn count_in_ring<S: $Trait + ?Sized>(
            s: &S,
            c: &Circuit,
            n: i64,
            successes: i64,
            failures: i64,
        ) -> Result<Counts, StorageError> {
            let pos_key = crate::keys::ring::position(c.name());
            let failures_key = crate::keys::ring::failures(c.name());
            let total = successes.saturating_add(failures);
            s.add(&pos_key, 0, Some(ring_retention())) $($aw)* ?;
            let after = s.incr(&pos_key, total) $($aw)* ?;
            let start = after - total;
            if start < 0 {
                return Err(StorageError::corrupt(&pos_key, alloc::format!("ring position {start}")));
            }
            if start / n != after / n {
                // The ring turned: every key of it lives a day from now.
                s.expire(&pos_key, ring_retention()) $($aw)* ?;
                s.expire(&failures_key, ring_retention()) $($aw)* ?;
                for j in 0..(n + crate::keys::RING_WORD_BITS - 1) / crate::keys::RING_WORD_BITS {
                    s.expire(&crate::keys::ring::word(c.name(), j), ring_retention()) $($aw)* ?;
                }
            }
            // Only the last `n` outcomes stay: the ones before are not
            // written (the successes go first, then the failures).
            let skip = (total - n).max(0);
            let skipped_successes = skip.min(successes);
            let (successes, failures) = (successes - skipped_successes, failures - (skip - skipped_successes));
            let mut p = start + skip;
            let mut delta = write_run(s, c, n, p, successes, false) $($aw)* ?;
            p += successes;
            delta += write_run(s, c, n, p, failures, true) $($aw)* ?;
            let failures = if delta != 0 {
                s.add(&failures_key, 0, Some(ring_retention())) $($aw)* ?;
                s.incr(&failures_key, delta) $($aw)* ?
            } else {
                s.get(&failures_key) $($aw)* ?.unwrap_or(0)
            };
            Ok(Counts::new(count(&failures_key, failures)?, u64::try_from(after.min(n)).unwrap_or(0)))
        }

        /// The counts of a count window: the failures in its ring, and how
        /// many outcomes it holds.
        $($kw)? fn ring_counts<S: $Trait + ?Sized>(s: &S, c: &Circuit, n: i64) -> Result<Counts, StorageError> {
            let pos_key = crate::keys::ring::position(c.name());
            let failures_key = crate::keys::ring::failures(c.name());
            let held = count(&pos_key, s.get(&pos_key) $($aw)* ?.unwrap_or(0))?;
            let failures = count(&failures_key, s.get(&failures_key) $($aw)* ?.unwrap_or(0))?;
            Ok(Counts::new(failures, held.min(u64::try_from(n).unwrap_or(0))))
        }

        /// Deletes a count window's keys.
        $($kw)? fn clear_ring<S: $Trait + ?Sized>(s: &S, c: &Circuit, n: i64) -> Result<(), StorageError> {
            s.delete(&crate::keys::ring::position(c.name())) $($aw)* ?;
            s.delete(&crate::keys::ring::failures(c.name())) $($aw)* ?;
            for j in 0..(n + crate::keys::RING_WORD_BITS - 1) / crate::keys::RING_WORD_BITS {
                s.delete(&crate::keys::ring::word(c.name(), j)) $($aw)* ?;
            }
            Ok(())
        }

        /// Empties the window: the fixed window's counters, or the sliding
        /// window's buckets (whose numbers jump by the bucket count, so that
        /// a count in flight for an old bucket lands where nothing reads).
        $($kw)? fn clear_window<S: $Trait + ?Sized>(s: &S, c: &Circuit) -> Result<(), StorageError> {
            let keys = c.keys();
            s.delete(keys.failures()) $($aw)* ?;
            s.delete(keys.requests()) $($aw)* ?;
            if let crate::Window::Count { calls, .. } = c.window() {
                clear_ring(s, c, i64::from(calls)) $($aw)* ?;
            }
            if let (crate::Window::Sliding { buckets }, Some(bucket)) = (c.window(), c.bucket_ms()) {
                let seq_key = crate::keys::window::seq(c.name());
                if s.incr(&seq_key, i64::from(buckets)) $($aw)* .is_err() {
                    // (garbage there: start the numbers again)
                    s.delete(&seq_key) $($aw)* ?;
                }
                let bucket = core::time::Duration::from_millis(bucket);
                s.expire(&seq_key, c.timing().failure_timeout() + bucket) $($aw)* ?;
                s.delete(&crate::keys::window::now(c.name())) $($aw)* ?;
            }
            Ok(())
        }

        /// The default body of `admit`.
        pub $($kw)? fn admit<S: $Trait + ?Sized>(
            s: &S,
            c: &Circuit,
        ) -> Result<(Admission, Option<Transition>), StorageError> {
            match mode(s, c) $($aw)* ? {
                Mode::Disabled => return Ok((Admission::Admitted(Permit::Normal), None)),
                Mode::ForcedOpen => return Ok((Admission::Rejected { retry_after: None }, None)),
                Mode::Normal => {}
            }
            if is_open(s, c) $($aw)* ? {
                return Ok((Admission::Rejected { retry_after: None }, None));
            }
            let timing = c.timing();
            let max = i64::from(timing.half_open_max_calls);
            let normal = (Admission::Admitted(Permit::Normal), None);
            let full = (Admission::Rejected { retry_after: None }, None);
            if max == 0 {
                return Ok(normal);
            }
            let keys = c.keys();
            let Some(m) = s.get(keys.trials()) $($aw)* ? else {
                return Ok(normal);
            };
            let episode = marker::episode(keys.trials(), m)?;
            let leases = marker::count(keys.trials(), m)?;
            let lease_key = keys.trial_lease();
            let lease = s.get(lease_key) $($aw)* ?;
            if let Some(lease) = lease {
                if marker::episode(lease_key, lease)? == episode {
                    // The current lease: a slot of it, if one is free.
                    if take_slot(s, lease_key, lease, episode, max) $($aw)* ? {
                        return Ok((Admission::Admitted(Permit::Trial { episode }), None));
                    }
                    return Ok(full);
                }
                // A lease of no current episode (left by such a race):
                // replaced by the one this call starts.
                s.delete(lease_key) $($aw)* ?;
            }
            // No current lease: this call starts one, with the slots of the
            // trials that passed already. The first of a half-open period
            // keeps the episode the opening wrote; a later one takes a new
            // episode, so that the trials of the lease that ended decide
            // nothing.
            let first = leases == 0;
            let (next, passed) = if first {
                (episode, 0)
            } else {
                let passed = match s.get(keys.trials_passed()) $($aw)* ? {
                    Some(p) => count(keys.trials_passed(), p)?,
                    None => 0,
                };
                (marker::fresh_episode(Some(episode)), i64::try_from(passed).unwrap_or(i64::MAX))
            };
            if passed >= max {
                return Ok(full);
            }
            if !s.add(lease_key, marker::value(next, passed + 1), Some(timing.trial_lease())) $($aw)* ? {
                // Another caller started it first. The first lease of a
                // half-open period keeps the period's episode, which this
                // caller knows: a slot of it, if one is free. (A later
                // lease's episode is the other caller's to choose.)
                if first {
                    if let Some(lease) = s.get(lease_key) $($aw)* ? {
                        if marker::episode(lease_key, lease)? == episode
                            && take_slot(s, lease_key, lease, episode, max) $($aw)* ?
                        {
                            return Ok((Admission::Admitted(Permit::Trial { episode }), None));
                        }
                    }
                }
                return Ok(full);
            }
            if s.get(keys.trials()) $($aw)* ? != Some(m) {
                // The circuit reopened (or was closed or reset) since the
                // marker was read: this lease is of no period.
                s.delete(lease_key) $($aw)* ?;
                return Ok(full);
            }
            let leases = leases.saturating_add(1).min(marker::MAX_COUNT);
            s.set(keys.trials(), marker::value(next, leases), Some(timing.marker_ttl_after_lease())) $($aw)* ?;
            let transition = first.then_some(Transition { from: State::Open, to: State::HalfOpen });
            Ok((Admission::Admitted(Permit::Trial { episode: next }), transition))
        }

        /// Takes a slot of the lease `lease` (read at `key`, of `episode`),
        /// if one of its `max` is free; a rejection takes none.
        $($kw)? fn take_slot<S: $Trait + ?Sized>(
            s: &S,
            key: &str,
            lease: i64,
            episode: u32,
            max: i64,
        ) -> Result<bool, StorageError> {
            if marker::count(key, lease)? >= max {
                return Ok(false);
            }
            let after = s.incr(key, 1) $($aw)* ?;
            let ours = marker::episode(key, after).ok() == Some(episode);
            if ours && (1..=max).contains(&marker::count(key, after)?) {
                return Ok(true);
            }
            if ours {
                // Lost a race for the last slot: a rejection takes none.
                s.incr(key, -1) $($aw)* ?;
            }
            // (Not ours: the lease ended between the read and the INCR,
            // which made a key of no episode; the next admission replaces
            // it.)
            Ok(false)
        }

        /// The default body of `record`.
        pub $($kw)? fn record<S: $Trait + ?Sized>(
            s: &S,
            c: &Circuit,
            permit: Permit,
            outcome: Outcome,
            rule: &dyn Rule,
        ) -> Result<Option<Transition>, StorageError> {
            let keys = c.keys();
            match permit {
                Permit::Normal => {
                    if outcome == Outcome::Success && !c.counts_requests() {
                        return Ok(None);
                    }
                    let failures = u64::from(outcome == Outcome::Failure);
                    let batch = Counts::new(failures, u64::from(c.counts_requests()));
                    Ok(count_batch(s, c, batch, rule, false) $($aw)* ?.transition)
                }
                Permit::Trial { episode } => {
                    // A trial that outlived its lease or its half-open
                    // period decides nothing.
                    if is_open(s, c) $($aw)* ? {
                        return Ok(None);
                    }
                    match s.get(keys.trials()) $($aw)* ? {
                        Some(m) if marker::episode(keys.trials(), m)? == episode => {}
                        _ => return Ok(None),
                    }
                    if outcome == Outcome::Failure {
                        open_circuit(s, c) $($aw)* ?;
                        return Ok(Some(Transition { from: State::HalfOpen, to: State::Open }));
                    }
                    let passed = s.incr(keys.trials_passed(), 1) $($aw)* ?;
                    if passed == 1 {
                        // Passes last as long as the half-open state.
                        s.expire(keys.trials_passed(), c.timing().marker_ttl_after_lease()) $($aw)* ?;
                    }
                    if passed < i64::from(c.timing().half_open_successes) {
                        return Ok(None);
                    }
                    for key in [keys.trials(), keys.trial_lease(), keys.trials_passed()] {
                        s.delete(key) $($aw)* ?;
                    }
                    clear_window(s, c) $($aw)* ?;
                    if c.timing().backoff.is_some() {
                        // Closed for a whole window, the next opening is
                        // the first again.
                        s.expire(keys.openings(), c.timing().failure_timeout()) $($aw)* ?;
                    }
                    Ok(Some(Transition { from: State::HalfOpen, to: State::Closed }))
                }
            }
        }

        /// The default body of `sync`. (The part number is read, then
        /// written after the counts: a writer has one sync in flight at a
        /// time, so nothing else moves it in between.)
        pub $($kw)? fn sync<S: $Trait + ?Sized>(
            s: &S,
            c: &Circuit,
            batch: &SyncBatch<'_>,
            rule: &dyn Rule,
        ) -> Result<Snapshot, StorageError> {
            let key = batch.writer_key();
            // (garbage at the writer key, which only this breaker writes,
            // reads as nothing counted yet)
            let counted = match s.get(key) $($aw)* {
                Ok(Some(n)) => u64::try_from(n).unwrap_or(0),
                Ok(None) => 0,
                Err(e) if e.kind() == crate::error::StorageErrorKind::Corrupt => 0,
                Err(e) => return Err(e),
            };
            let snapshot = count_batch(s, c, batch.counts_after(counted), rule, true) $($aw)* ?;
            let last = batch.last_part();
            if last > counted {
                let last = i64::try_from(last).unwrap_or(i64::MAX);
                // The counts are in: the step succeeded, whatever happens to
                // this write. (Failing the step here would have its parts
                // sent, and counted, again; with the write lost, nothing is
                // sent again: later parts have higher numbers.)
                let _ = s.set(key, last, Some(c.timing().failure_timeout())) $($aw)*;
            }
            Ok(snapshot)
        }

        /// Counts a batch of outcomes of normal calls (one call's for
        /// `record`, a process's since its last sync for `sync`), asks the
        /// rule after a failure, and opens the circuit if it says so. The
        /// counts are read back for the snapshot only when `report`.
        $($kw)? fn count_batch<S: $Trait + ?Sized>(
            s: &S,
            c: &Circuit,
            batch: Counts,
            rule: &dyn Rule,
            report: bool,
        ) -> Result<Snapshot, StorageError> {
            let keys = c.keys();
            let window = c.timing().failure_timeout();
            let nothing = Counts::default();
            // As in the original: nothing is counted while open, and (ours)
            // nothing but trials while half-open. Disabled by hand:
            // everything is counted, nothing trips.
            let mode = mode(s, c) $($aw)* ?;
            if mode == Mode::ForcedOpen {
                return Ok(Snapshot::new(State::ForcedOpen, nothing));
            }
            let disabled = mode == Mode::Disabled;
            if !disabled && is_open(s, c) $($aw)* ? {
                // (the primitives cannot read a TTL: the time left is unknown)
                return Ok(Snapshot::new(State::Open, nothing));
            }
            if !disabled && c.timing().half_open_max_calls > 0 && s.get(keys.trials()) $($aw)* ?.is_some() {
                return Ok(Snapshot::new(State::HalfOpen, nothing));
            }
            let state = if disabled { State::Disabled } else { State::Closed };
            if let Some(bucket) = c.bucket_ms() {
                return count_in_buckets(s, c, batch, rule, report, state, bucket) $($aw)*;
            }
            if let crate::Window::Count { calls, minimum } = c.window() {
                let failures = i64::try_from(batch.failures).unwrap_or(i64::MAX);
                let requests = i64::try_from(batch.requests.max(batch.failures)).unwrap_or(i64::MAX);
                if requests == 0 {
                    let counts = if report { ring_counts(s, c, i64::from(calls)) $($aw)* ? } else { Counts::default() };
                    return Ok(Snapshot::new(state, counts));
                }
                let counts = count_in_ring(s, c, i64::from(calls), requests - failures, failures) $($aw)* ?;
                if failures > 0 && state == State::Closed && counts.requests >= u64::from(minimum) && rule.should_open(counts) {
                    return trip(s, c) $($aw)*;
                }
                return Ok(Snapshot::new(state, counts));
            }
            let added_requests = if c.counts_requests() { batch.requests } else { 0 };
            let added_requests = i64::try_from(added_requests).unwrap_or(i64::MAX);
            let added_failures = i64::try_from(batch.failures).unwrap_or(i64::MAX);
            let mut failures_created = false;
            let requests = if added_requests > 0 {
                let n = s.incr(keys.requests(), added_requests) $($aw)* ?;
                if n == added_requests {
                    // A new window: both counters get the same TTL.
                    // (`add`, not `set`: a failure counted meanwhile by
                    // another caller of this window must not be lost.)
                    s.expire(keys.requests(), window) $($aw)* ?;
                    s.add(keys.failures(), 0, Some(window)) $($aw)* ?;
                    failures_created = true;
                }
                count(keys.requests(), n)?
            } else if report && c.counts_requests() {
                count(keys.requests(), s.get(keys.requests()) $($aw)* ?.unwrap_or(0))?
            } else {
                0
            };
            if added_failures == 0 {
                let failures = if report {
                    count(keys.failures(), s.get(keys.failures()) $($aw)* ?.unwrap_or(0))?
                } else {
                    0
                };
                return Ok(Snapshot::new(state, Counts::new(failures, requests)));
            }
            if !failures_created {
                // Makes sure the counter has its TTL from its first
                // increment on (INCR alone would create it without).
                s.add(keys.failures(), 0, Some(window)) $($aw)* ?;
            }
            let failures = count(keys.failures(), s.incr(keys.failures(), added_failures) $($aw)* ?)?;
            // If an opening deleted the counter between the `add` and the
            // `incr`, the `incr` made it anew, without a TTL: it would never
            // expire, and its count would go on into every later window.
            // Only a counter that held nothing before this batch can be such
            // a one.
            let fresh = failures == batch.failures;
            if fresh && !c.counts_requests() {
                // The counter is the window: it starts now.
                s.expire(keys.failures(), window) $($aw)* ?;
            } else if fresh && !disabled {
                // The window is the request counter's: a failure counter is
                // only the window's while the circuit is closed; if it no
                // longer is, this one is left over (openings and closings
                // empty the counters).
                let left_closed = is_open(s, c) $($aw)* ?
                    || (c.timing().half_open_max_calls > 0
                        && s.get(keys.trials()) $($aw)* ?.is_some());
                if left_closed {
                    s.delete(keys.failures()) $($aw)* ?;
                    return Ok(Snapshot::new(state, nothing));
                }
            }
            let counts = Counts::new(failures, requests);
            if !disabled && rule.should_open(counts) {
                return trip(s, c) $($aw)*;
            }
            Ok(Snapshot::new(state, counts))
        }

        /// Opens a closed circuit whose rule said open: the snapshot of the
        /// trip, with the open time.
        $($kw)? fn trip<S: $Trait + ?Sized>(s: &S, c: &Circuit) -> Result<Snapshot, StorageError> {
            let open_time = open_for(s, c) $($aw)* ?;
            Ok(Snapshot::new(State::Open, Counts::default())
                .with_open_for(Some(open_time))
                .with_transition(Some(Transition { from: State::Closed, to: State::Open })))
        }

        /// `count_batch` on a sliding window: counts in the current
        /// bucket, and reads the live ones after a failure (or to report).
        $($kw)? fn count_in_buckets<S: $Trait + ?Sized>(
            s: &S,
            c: &Circuit,
            batch: Counts,
            rule: &dyn Rule,
            report: bool,
            state: State,
            bucket_ms: u64,
        ) -> Result<Snapshot, StorageError> {
            let added_requests = if c.counts_requests() { batch.requests } else { 0 };
            let added_requests = i64::try_from(added_requests).unwrap_or(i64::MAX);
            let added_failures = i64::try_from(batch.failures).unwrap_or(i64::MAX);
            if added_requests == 0 && added_failures == 0 {
                let counts = if report { bucket_counts(s, c, None) $($aw)* ? } else { Counts::default() };
                return Ok(Snapshot::new(state, counts));
            }
            let n = current_bucket(s, c, core::time::Duration::from_millis(bucket_ms)) $($aw)* ?;
            if added_requests > 0 {
                add_to_bucket(s, c, &crate::keys::window::requests(c.name(), n), added_requests) $($aw)* ?;
            }
            if added_failures > 0 {
                add_to_bucket(s, c, &crate::keys::window::failures(c.name(), n), added_failures) $($aw)* ?;
            } else if !report {
                return Ok(Snapshot::new(state, Counts::default()));
            }
            let counts = bucket_counts(s, c, Some(n)) $($aw)* ?;
            if added_failures > 0 && state == State::Closed && rule.should_open(counts) {
                return trip(s, c) $($aw)*;
            }
            Ok(Snapshot::new(state, counts))
        }

        /// The default body of `release`.
        pub $($kw)? fn release<S: $Trait + ?Sized>(
            s: &S,
            c: &Circuit,
            permit: Permit,
        ) -> Result<(), StorageError> {
            let Permit::Trial { episode } = permit else {
                return Ok(());
            };
            if is_open(s, c) $($aw)* ? {
                return Ok(());
            }
            match s.get(c.keys().trials()) $($aw)* ? {
                Some(m) if marker::episode(c.keys().trials(), m)? == episode => {}
                _ => return Ok(()),
            }
            let key = c.keys().trial_lease();
            // Nothing to give back once the lease is over (its key gone, or
            // of another episode) or every slot is back already.
            match s.get(key) $($aw)* ? {
                Some(l) if marker::episode(key, l)? == episode && marker::count(key, l)? > 0 => {}
                _ => return Ok(()),
            }
            let after = s.incr(key, -1) $($aw)* ?;
            if after < 0 {
                // The key expired in between and INCR made a TTL-less -1.
                s.delete(key) $($aw)* ?;
            } else if marker::episode(key, after.saturating_add(1)).ok() != Some(episode) {
                // A new lease started in between: the permit was not of
                // this one, put its slot back.
                s.incr(key, 1) $($aw)* ?;
            }
            Ok(())
        }

        /// The default body of `open_circuit`.
        pub $($kw)? fn open_circuit<S: $Trait + ?Sized>(s: &S, c: &Circuit) -> Result<(), StorageError> {
            open_for(s, c) $($aw)* .map(drop)
        }

        /// How long the next opening lasts: the circuit timeout, or with a
        /// backoff the next time of the sequence, the count of openings
        /// (`lasier:openings:<name>`) moved on. Only a backoff costs the
        /// extra commands.
        $($kw)? fn open_time<S: $Trait + ?Sized>(s: &S, c: &Circuit) -> Result<core::time::Duration, StorageError> {
            let timing = c.timing();
            if timing.backoff.is_none() {
                return Ok(timing.circuit_timeout());
            }
            let key = c.keys().openings();
            // (garbage there starts the sequence again: the opening
            // matters more)
            let openings = match s.incr(key, 1) $($aw)* {
                Ok(n) if n >= 1 => n,
                Ok(_) | Err(_) => {
                    s.set(key, 1, None) $($aw)* ?;
                    1
                }
            };
            let openings = u32::try_from(openings).unwrap_or(u32::MAX);
            let open_ms = timing.open_time_ms(openings, u64::from(marker::fresh_id()));
            let ttl = timing.openings_ttl_after_opening_ms(open_ms);
            s.expire(key, core::time::Duration::from_millis(ttl)) $($aw)* ?;
            Ok(core::time::Duration::from_millis(open_ms))
        }

        /// Opens the circuit; returns how long for.
        $($kw)? fn open_for<S: $Trait + ?Sized>(s: &S, c: &Circuit) -> Result<core::time::Duration, StorageError> {
            let keys = c.keys();
            let timing = c.timing();
            let open_time = open_time(s, c) $($aw)* ?;
            s.set(keys.open(), 1, Some(open_time)) $($aw)* ?;
            if timing.half_open_max_calls > 0 {
                // Marks the half-open period that follows the open one; it
                // lasts until the trials decide (or a day idle).
                // (garbage there is overwritten, not reported: the opening
                // matters more)
                let previous = s.get(keys.trials()) $($aw)* .ok().flatten();
                let episode = marker::fresh_episode(previous.and_then(|p| marker::episode(keys.trials(), p).ok()));
                let marker_ttl = timing.marker_ttl_after_open_time(crate::clock::ceil_millis(open_time));
                s.set(keys.trials(), marker::value(episode, 0), Some(marker_ttl)) $($aw)* ?;
                s.delete(keys.trial_lease()) $($aw)* ?;
                s.delete(keys.trials_passed()) $($aw)* ?;
            }
            clear_window(s, c) $($aw)* ?;
            Ok(open_time)
        }

        /// The default body of `state`.
        pub $($kw)? fn state<S: $Trait + ?Sized>(s: &S, c: &Circuit) -> Result<State, StorageError> {
            match mode(s, c) $($aw)* ? {
                Mode::ForcedOpen => return Ok(State::ForcedOpen),
                Mode::Disabled => return Ok(State::Disabled),
                Mode::Normal => {}
            }
            if is_open(s, c) $($aw)* ? {
                return Ok(State::Open);
            }
            if c.timing().half_open_max_calls > 0 && s.get(c.keys().trials()) $($aw)* ?.is_some() {
                return Ok(State::HalfOpen);
            }
            Ok(State::Closed)
        }

        /// The default body of `counts`.
        pub $($kw)? fn counts<S: $Trait + ?Sized>(s: &S, c: &Circuit) -> Result<Counts, StorageError> {
            if c.bucket_ms().is_some() {
                return bucket_counts(s, c, None) $($aw)*;
            }
            if let crate::Window::Count { calls, .. } = c.window() {
                return ring_counts(s, c, i64::from(calls)) $($aw)*;
            }
            let keys = c.keys();
            let failures = s.get(keys.failures()) $($aw)* ?.unwrap_or(0);
            let requests = if c.counts_requests() { s.get(keys.requests()) $($aw)* ?.unwrap_or(0) } else { 0 };
            Ok(Counts::new(count(keys.failures(), failures)?, count(keys.requests(), requests)?))
        }

        /// The default body of `repair`.
        pub $($kw)? fn repair<S: $Trait + ?Sized>(s: &S, c: &Circuit) -> Result<(), StorageError> {
            let keys = c.keys();
            for key in keys.all() {
                let corrupt = match s.get(key) $($aw)* {
                    Ok(None) => false,
                    Ok(Some(value)) => {
                        value < 0
                            || value == i64::MAX // a counter INCR can no longer move
                            || (key == keys.open() && value != 1)
                            || (key == keys.mode() && !(1..=2).contains(&value))
                            || ((key == keys.trials() || key == keys.trial_lease())
                                && marker::episode(key, value).is_err())
                    }
                    Err(e) if e.kind() == crate::error::StorageErrorKind::Corrupt => true,
                    Err(e) => return Err(e),
                };
                if corrupt {
                    s.delete(key) $($aw)* ?;
                }
            }
            if let crate::Window::Count { calls, .. } = c.window() {
                // A ring with garbage anywhere is emptied whole: its bits
                // and its count no longer agree.
                let n = i64::from(calls);
                let words = (n + crate::keys::RING_WORD_BITS - 1) / crate::keys::RING_WORD_BITS;
                let mut keys_of_ring = alloc::vec![crate::keys::ring::position(c.name()), crate::keys::ring::failures(c.name())];
                keys_of_ring.extend((0..words).map(|j| crate::keys::ring::word(c.name(), j)));
                let mut corrupt = false;
                for (k, key) in keys_of_ring.iter().enumerate() {
                    corrupt |= match s.get(key) $($aw)* {
                        Ok(None) => false,
                        Ok(Some(v)) => v < 0 || v == i64::MAX || (k >= 2 && v >= 1 << crate::keys::RING_WORD_BITS),
                        Err(e) if e.kind() == crate::error::StorageErrorKind::Corrupt => true,
                        Err(e) => return Err(e),
                    };
                }
                if corrupt {
                    clear_ring(s, c, n) $($aw)* ?;
                }
            }
            if let crate::Window::Sliding { buckets } = c.window() {
                // The numbers first: garbage there starts the numbering anew
                // (a new range: what the buckets held is forgotten).
                let seq_key = crate::keys::window::seq(c.name());
                let now_key = crate::keys::window::now(c.name());
                let mut last = None;
                for key in [&seq_key, &now_key] {
                    match s.get(key) $($aw)* {
                        Ok(None) => {}
                        Ok(Some(n)) if (1..i64::MAX / 2).contains(&n) => {
                            if *key == seq_key {
                                last = Some(n);
                            }
                        }
                        Ok(Some(_)) => s.delete(key) $($aw)* ?,
                        Err(e) if e.kind() == crate::error::StorageErrorKind::Corrupt => s.delete(key) $($aw)* ?,
                        Err(e) => return Err(e),
                    }
                }
                if let Some(last) = last {
                    for n in (last - i64::from(buckets) + 1).max(1)..=last {
                        for key in [crate::keys::window::failures(c.name(), n), crate::keys::window::requests(c.name(), n)] {
                            match s.get(&key) $($aw)* {
                                Ok(Some(v)) if v < 0 || v == i64::MAX => s.delete(&key) $($aw)* ?,
                                Ok(_) => {}
                                Err(e) if e.kind() == crate::error::StorageErrorKind::Corrupt => s.delete(&key) $($aw)* ?,
                                Err(e) => return Err(e),
                            }
                        }
                    }
                }
            }
            Ok(())
        }

        /// The default body of `set_manual`.
        pub $($kw)? fn set_manual<S: $Trait + ?Sized>(
            s: &S,
            c: &Circuit,
            manual: Manual,
        ) -> Result<Option<Transition>, StorageError> {
            let keys = c.keys();
            let from = state(s, c) $($aw)* ?;
            let to = match manual {
                Manual::ForceOpen => {
                    s.set(keys.mode(), 1, None) $($aw)* ?;
                    // The original's flag too, without a TTL: a Python
                    // service sharing the circuit sees it open as well.
                    s.set(keys.open(), 1, None) $($aw)* ?;
                    for key in [keys.trials(), keys.trial_lease(), keys.trials_passed()] {
                        s.delete(key) $($aw)* ?;
                    }
                    clear_window(s, c) $($aw)* ?;
                    State::ForcedOpen
                }
                Manual::Close => {
                    reset(s, c) $($aw)* ?;
                    State::Closed
                }
                Manual::Disable => {
                    s.set(keys.mode(), 2, None) $($aw)* ?;
                    for key in [keys.open(), keys.trials(), keys.trial_lease(), keys.trials_passed()] {
                        s.delete(key) $($aw)* ?;
                    }
                    State::Disabled
                }
            };
            Ok((from != to).then_some(Transition { from, to }))
        }

        /// The default body of `reset`.
        pub $($kw)? fn reset<S: $Trait + ?Sized>(s: &S, c: &Circuit) -> Result<(), StorageError> {
            for key in c.keys().all() {
                s.delete(key) $($aw)* ?;
            }
            if let crate::Window::Count { calls, .. } = c.window() {
                clear_ring(s, c, i64::from(calls)) $($aw)* ?;
            }
            if let crate::Window::Sliding { buckets } = c.window() {
                let seq_key = crate::keys::window::seq(c.name());
                // The buckets of the last two ranges of numbers (an emptied
                // window's and the one after); older ones end by their TTL.
                if let Ok(Some(last)) = s.get(&seq_key) $($aw)* {
                    let buckets = i64::from(buckets);
                    for n in (last - 2 * buckets + 1).max(1)..=last {
                        s.delete(&crate::keys::window::failures(c.name(), n)) $($aw)* ?;
                        s.delete(&crate::keys::window::requests(c.name(), n)) $($aw)* ?;
                    }
                }
                // The numbering goes on (the key ends by its TTL): a bucket
                // of an earlier range that still lives is never read again.
                clear_window(s, c) $($aw)* ?;
            }
            Ok(())
        }
    };
}

/// The values of the half-open marker (`lasier:half_open:<name>`) and of the
/// trial lease (`lasier:half_open_lease:<name>`), as the Redis scripts keep
/// them: an episode number times 65 536, plus a count (at most 65 535): the
/// leases started, in the marker; the trial slots used, in the lease. A
/// trial carries its lease's episode, so that one that outlived its lease or
/// its half-open period (a verdict or a cancellation arriving late) cannot
/// act on the next.
pub(crate) mod marker {
    use crate::error::StorageError;

    const SHIFT: u32 = 16;
    /// The largest count a value holds.
    pub(crate) const MAX_COUNT: i64 = (1 << SHIFT) - 1;

    fn checked(key: &str, value: i64) -> Result<i64, StorageError> {
        if value < 0 {
            return Err(StorageError::corrupt(
                key,
                alloc::format!("negative counter {value}"),
            ));
        }
        Ok(value)
    }

    /// The count.
    pub(crate) fn count(key: &str, value: i64) -> Result<i64, StorageError> {
        Ok(checked(key, value)? & MAX_COUNT)
    }

    /// The episode.
    pub(crate) fn episode(key: &str, value: i64) -> Result<u32, StorageError> {
        u32::try_from(checked(key, value)? >> SHIFT).map_err(|_| {
            StorageError::corrupt(key, alloc::format!("half-open marker {value} out of range"))
        })
    }

    /// The value of `episode` with `count`.
    pub(crate) fn value(episode: u32, count: i64) -> i64 {
        (i64::from(episode) << SHIFT) | count.clamp(0, MAX_COUNT)
    }

    /// 32 random bits, for an identifier no other process is likely to
    /// pick.
    pub(crate) fn fresh_id() -> u32 {
        random_u32()
    }

    /// A new episode number, not likely to have been used before by any
    /// process sharing the circuit, and never `previous` (the one it
    /// replaces).
    pub(crate) fn fresh_episode(previous: Option<u32>) -> u32 {
        let episode = random_u32();
        if previous == Some(episode) {
            episode.wrapping_add(1)
        } else {
            episode
        }
    }

    /// 32 bits that differ from call to call and from process to process:
    /// a counter, mixed with a per-process seed (the standard library's
    /// random hash keys with `std`, the address of a static otherwise).
    fn random_u32() -> u32 {
        use core::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mixed = splitmix64(seed() ^ splitmix64(n));
        (mixed >> 32) as u32
    }

    #[cfg(feature = "std")]
    fn seed() -> u64 {
        use core::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x6c61_7369_6572);
        hasher.finish()
    }

    #[cfg(not(feature = "std"))]
    fn seed() -> u64 {
        static ANCHOR: u8 = 0;
        core::ptr::addr_of!(ANCHOR) as usize as u64
    }

    fn splitmix64(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_value_holds_an_episode_and_a_count() {
            let e = fresh_episode(None);
            let v = value(e, 3);
            assert_eq!(count("k", v).unwrap(), 3);
            assert_eq!(episode("k", v).unwrap(), e);
            assert_eq!(count("k", value(e, 1 << 20)).unwrap(), MAX_COUNT);
            assert!(count("k", -1).is_err());
            assert!(episode("k", i64::MAX).is_err());
        }

        #[test]
        fn a_fresh_episode_never_repeats_the_previous_one() {
            for _ in 0..1000 {
                let previous = fresh_episode(None);
                assert_ne!(fresh_episode(Some(previous)), previous);
            }
        }
    }
}

pub(crate) use marker::fresh_id;

/// The default bodies over [`Storage`](crate::Storage).
pub mod blocking {
    fused_steps!(crate::storage::Storage, ,);
}

#[cfg(feature = "async")]
/// The default bodies over [`AsyncStorage`](crate::AsyncStorage).
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub mod nonblocking {
    fused_steps!(crate::async_storage::AsyncStorage, async, .await);
}
