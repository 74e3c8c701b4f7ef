//! The checks of the six primitives: `add`, `set`, `incr`, `get`, `expire`,
//! `delete`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::probe::{ensure, Broken, Names, Probe, ShowTtl, Timeline};
use crate::store::value_of;

/// Long enough never to expire during a check.
const LONG: Duration = Duration::from_secs(600);

pub(crate) async fn get_of_a_missing_key_is_none(p: &Probe<'_>, n: &Names) -> Result<(), Broken> {
    let key = n.key("never-written");
    let value = p.get(&key).await?;
    ensure(value.is_none(), || {
        format!("get({key:?}) of a key never written returned {value:?}, expected None")
    })
}

pub(crate) async fn add_writes_only_when_absent(p: &Probe<'_>, n: &Names) -> Result<(), Broken> {
    let key = n.key("added");
    let wrote = p.add(&key, 5, None).await?;
    ensure(wrote, || {
        format!("add({key:?}, 5) on an absent key returned false, expected true (it wrote)")
    })?;
    let value = p.get(&key).await?;
    ensure(value == Some(5), || {
        format!("after add({key:?}, 5) on an absent key, get returned {value:?}, expected Some(5)")
    })?;
    let wrote = p.add(&key, 7, Some(LONG)).await?;
    let value = p.get(&key).await?;
    ensure(!wrote && value == Some(5), || {
        format!(
            "a second add({key:?}, 7) returned {wrote} and left the value at {value:?}; \
             expected false and Some(5): add overwrote a key that exists"
        )
    })?;

    let key = n.key("set-then-added");
    p.set(&key, 1, None).await?;
    let wrote = p.add(&key, 2, None).await?;
    let value = p.get(&key).await?;
    ensure(!wrote && value == Some(1), || {
        format!(
            "add({key:?}, 2) on a key written by set(.., 1) returned {wrote} and left \
             {value:?}; expected false and Some(1)"
        )
    })?;

    let key = n.key("incremented-then-added");
    p.incr(&key, 3).await?;
    let wrote = p.add(&key, 9, None).await?;
    let value = p.get(&key).await?;
    ensure(!wrote && value == Some(3), || {
        format!(
            "add({key:?}, 9) on a key created by incr(.., 3) returned {wrote} and left \
             {value:?}; expected false and Some(3)"
        )
    })
}

pub(crate) async fn add_is_atomic(p: &Probe<'_>, n: &Names, workers: usize) -> Result<(), Broken> {
    let key = n.key("raced");
    let wrote = p.add_concurrently(&key, workers).await?;
    let winners: Vec<usize> = (0..wrote.len()).filter(|i| wrote[*i]).collect();
    let value = p.get(&key).await?;
    ensure(winners.len() == 1, || {
        format!(
            "{workers} concurrent add({key:?}, i) calls on an absent key: {} returned true, \
             expected exactly 1 (the value is now {value:?})",
            winners.len()
        )
    })?;
    let expected = winners.first().map(|i| value_of(*i));
    ensure(value == expected, || {
        format!(
            "{workers} concurrent add({key:?}, i) calls: caller {:?} was told it wrote, but \
             the value is {value:?}, expected {expected:?}: another add overwrote it",
            winners.first()
        )
    })
}

/// Values a counter or flag can hold, including ones that do not survive a
/// float (2^53 + 1), a 32-bit or an unsigned type.
const VALUES: [i64; 10] = [
    0,
    1,
    -1,
    42,
    -42,
    1 << 31,
    -(1 << 31) - 1,
    (1 << 53) + 1,
    i64::MAX,
    i64::MIN,
];

pub(crate) async fn values_round_trip(p: &Probe<'_>, n: &Names) -> Result<(), Broken> {
    for (i, value) in VALUES.into_iter().enumerate() {
        for (how, key) in [
            ("set", n.key(&format!("set-{i}"))),
            ("add", n.key(&format!("add-{i}"))),
        ] {
            if how == "set" {
                p.set(&key, value, None).await?;
            } else {
                p.add(&key, value, Some(LONG)).await?;
            }
            let back = p.get(&key).await?;
            ensure(back == Some(value), || {
                format!(
                    "{how}({key:?}, {value}) then get returned {back:?}, expected Some({value})"
                )
            })?;
        }
    }
    let key = n.key("overwritten");
    p.set(&key, 1, None).await?;
    p.set(&key, -2, Some(LONG)).await?;
    let back = p.get(&key).await?;
    ensure(back == Some(-2), || {
        format!("set({key:?}, 1) then set({key:?}, -2): get returned {back:?}, expected Some(-2)")
    })
}

pub(crate) async fn incr_treats_a_missing_key_as_zero(
    p: &Probe<'_>,
    n: &Names,
) -> Result<(), Broken> {
    for delta in [1, 5, -1] {
        let key = n.key(&format!("missing-{delta}"));
        let got = p.incr(&key, delta).await?;
        let back = p.get(&key).await?;
        ensure(got == delta && back == Some(delta), || {
            format!(
                "incr({key:?}, {delta}) on a missing key returned {got} and get then returned \
                 {back:?}; expected {delta} and Some({delta})"
            )
        })?;
    }
    let key = n.key("existing");
    p.set(&key, 10, None).await?;
    let mut expected = 10;
    for delta in [3, -20, 1] {
        expected += delta;
        let got = p.incr(&key, delta).await?;
        ensure(got == expected, || {
            format!("incr({key:?}, {delta}) returned {got}, expected the new value {expected}")
        })?;
    }
    let back = p.get(&key).await?;
    ensure(back == Some(expected), || {
        format!("after the increments get({key:?}) returned {back:?}, expected Some({expected})")
    })
}

pub(crate) async fn incr_never_loses_an_update(
    p: &Probe<'_>,
    n: &Names,
    workers: usize,
    each: usize,
) -> Result<(), Broken> {
    let key = n.key("contended");
    let returned = p.incr_concurrently(&key, workers, each).await?;
    let total = i64::try_from(workers * each).unwrap_or(i64::MAX);
    let back = p.get(&key).await?;
    let mut seen = BTreeMap::new();
    for value in &returned {
        *seen.entry(*value).or_insert(0_usize) += 1;
    }
    let repeated = seen.values().filter(|count| **count > 1).count();
    ensure(back == Some(total), || {
        format!(
            "{workers} concurrent callers each ran incr({key:?}, 1) {each} times: get then \
             returned {back:?}, expected Some({total}); {repeated} values were returned to more \
             than one caller: increments were lost"
        )
    })?;
    let exact = seen.len() == returned.len()
        && seen.keys().next() == Some(&1)
        && seen.keys().next_back() == Some(&total);
    ensure(exact, || {
        format!(
            "{workers} concurrent callers each ran incr({key:?}, 1) {each} times: the final \
             value is right, but the values returned were not 1..={total} each once \
             ({repeated} repeated): incr must return the value its own increment produced"
        )
    })
}

pub(crate) async fn delete_removes_the_key(p: &Probe<'_>, n: &Names) -> Result<(), Broken> {
    let key = n.key("deleted");
    p.set(&key, 4, Some(LONG)).await?;
    p.delete(&key).await?;
    let back = p.get(&key).await?;
    ensure(back.is_none(), || {
        format!("set({key:?}, 4) then delete: get returned {back:?}, expected None")
    })?;
    let wrote = p.add(&key, 1, None).await?;
    ensure(wrote, || {
        format!("add({key:?}, 1) after delete returned false, expected true: the key is gone")
    })?;
    p.delete(&key).await?;
    let got = p.incr(&key, 2).await?;
    ensure(got == 2, || {
        format!("incr({key:?}, 2) after delete returned {got}, expected 2: the key is gone")
    })?;
    p.delete(&n.key("never-written")).await
}

pub(crate) async fn expire_of_a_missing_key_does_nothing(
    p: &Probe<'_>,
    n: &Names,
) -> Result<(), Broken> {
    let key = n.key("expired-while-missing");
    p.expire(&key, LONG).await?;
    let back = p.get(&key).await?;
    ensure(back.is_none(), || {
        format!("expire({key:?}, ..) of a missing key, then get returned {back:?}, expected None")
    })?;
    let wrote = p.add(&key, 1, None).await?;
    ensure(wrote, || {
        format!(
            "add({key:?}, 1) after expire of the missing key returned false, expected true: \
             expire created the key"
        )
    })
}

// ---- timed checks: every observation is half a tick or more from a deadline

pub(crate) async fn ttls_expire(p: &Probe<'_>, n: &Names, t: &mut Timeline) -> Result<(), Broken> {
    let ttl = Some(t.ticks(2));
    let (set_key, add_key) = (n.key("set-with-ttl"), n.key("added-with-ttl"));
    p.set(&set_key, 1, ttl).await?;
    p.add(&add_key, 1, ttl).await?;
    t.advance_halves(3).await;
    for (how, key) in [("set", &set_key), ("add", &add_key)] {
        let back = p.get(key).await?;
        ensure(back == Some(1), || {
            format!(
                "{how}({key:?}, 1, {}): get 1.5 ticks later returned {back:?}, expected Some(1): \
                 the key expired early",
                ShowTtl(ttl)
            )
        })?;
    }
    t.advance_halves(2).await;
    for (how, key) in [("set", &set_key), ("add", &add_key)] {
        let back = p.get(key).await?;
        ensure(back.is_none(), || {
            format!(
                "{how}({key:?}, 1, {}): get 2.5 ticks ({:?}) later returned {back:?}, expected \
                 None: the TTL did not expire the key",
                ShowTtl(ttl),
                t.tick() * 5 / 2
            )
        })?;
    }
    Ok(())
}

pub(crate) async fn expired_keys_are_missing(
    p: &Probe<'_>,
    n: &Names,
    t: &mut Timeline,
) -> Result<(), Broken> {
    let ttl = Some(t.ticks(2));
    let (add_key, incr_key, expire_key) =
        (n.key("re-added"), n.key("re-counted"), n.key("re-expired"));
    for key in [&add_key, &incr_key, &expire_key] {
        p.set(key, 5, ttl).await?;
    }
    t.advance_halves(5).await;
    let wrote = p.add(&add_key, 9, None).await?;
    let back = p.get(&add_key).await?;
    ensure(wrote && back == Some(9), || {
        format!(
            "add({add_key:?}, 9) after its TTL ran out returned {wrote} and left {back:?}; \
             expected true and Some(9): an expired key is absent for add"
        )
    })?;
    let got = p.incr(&incr_key, 1).await?;
    ensure(got == 1, || {
        format!(
            "incr({incr_key:?}, 1) after its TTL ran out returned {got}, expected 1: an \
             expired key counts as 0"
        )
    })?;
    p.expire(&expire_key, LONG).await?;
    let back = p.get(&expire_key).await?;
    ensure(back.is_none(), || {
        format!(
            "expire({expire_key:?}, ..) after its TTL ran out brought it back: get returned \
             {back:?}, expected None"
        )
    })
}

pub(crate) async fn expire_sets_the_ttl(
    p: &Probe<'_>,
    n: &Names,
    t: &mut Timeline,
) -> Result<(), Broken> {
    let ttl = t.ticks(2);
    let (counter, shortened, missing) = (n.key("counter"), n.key("shortened"), n.key("missing"));
    p.incr(&counter, 1).await?;
    p.expire(&counter, ttl).await?;
    p.set(&shortened, 1, Some(t.ticks(20))).await?;
    p.expire(&shortened, ttl).await?;
    p.expire(&missing, t.ticks(1)).await?;
    p.incr(&missing, 1).await?;
    t.advance_halves(3).await;
    for key in [&counter, &shortened] {
        let back = p.get(key).await?;
        ensure(back == Some(1), || {
            format!(
                "expire({key:?}, {ttl:?}): get 1.5 ticks later returned {back:?}, expected \
                 Some(1): the key expired early"
            )
        })?;
    }
    t.advance_halves(2).await;
    let back = p.get(&counter).await?;
    ensure(back.is_none(), || {
        format!(
            "incr({counter:?}, 1) then expire(.., {ttl:?}): get 2.5 ticks later returned \
             {back:?}, expected None: expire did not set the TTL"
        )
    })?;
    let back = p.get(&shortened).await?;
    ensure(back.is_none(), || {
        format!(
            "set({shortened:?}, 1, TTL {:?}) then expire(.., {ttl:?}): get 2.5 ticks later \
             returned {back:?}, expected None: expire did not replace the TTL",
            t.ticks(20)
        )
    })?;
    let back = p.get(&missing).await?;
    ensure(back == Some(1), || {
        format!(
            "expire({missing:?}, 1 tick) while missing, then incr(.., 1): get 2.5 ticks later \
             returned {back:?}, expected Some(1): expire of a missing key left a TTL behind"
        )
    })
}

pub(crate) async fn incr_keeps_the_ttl(
    p: &Probe<'_>,
    n: &Names,
    t: &mut Timeline,
) -> Result<(), Broken> {
    let ttl = Some(t.ticks(2));
    let (set_key, add_key) = (n.key("set-counter"), n.key("added-counter"));
    p.set(&set_key, 1, ttl).await?;
    p.add(&add_key, 0, ttl).await?;
    t.advance_halves(3).await;
    let got = p.incr(&set_key, 1).await?;
    ensure(got == 2, || {
        format!(
            "incr({set_key:?}, 1) 1.5 ticks after set(.., 1, {}) returned {got}, expected 2",
            ShowTtl(ttl)
        )
    })?;
    p.incr(&add_key, 1).await?;
    t.advance_halves(2).await;
    for (how, key, value) in [("set", &set_key, 1), ("add", &add_key, 0)] {
        let back = p.get(key).await?;
        ensure(back.is_none(), || {
            format!(
                "{how}({key:?}, {value}, {}), then incr(.., 1) 1.5 ticks later: get 2.5 ticks \
                 after the {how} returned {back:?}, expected None: incr removed or extended the \
                 TTL",
                ShowTtl(ttl)
            )
        })?;
    }
    Ok(())
}

pub(crate) async fn set_replaces_the_ttl(
    p: &Probe<'_>,
    n: &Names,
    t: &mut Timeline,
) -> Result<(), Broken> {
    let ttl = Some(t.ticks(2));
    let (longer, unlimited) = (n.key("had-a-longer-ttl"), n.key("had-no-ttl"));
    p.set(&longer, 1, Some(t.ticks(20))).await?;
    p.set(&unlimited, 1, None).await?;
    p.set(&longer, 2, ttl).await?;
    p.set(&unlimited, 2, ttl).await?;
    t.advance_halves(5).await;
    for (key, before) in [
        (&longer, ShowTtl(Some(t.ticks(20)))),
        (&unlimited, ShowTtl(None)),
    ] {
        let back = p.get(key).await?;
        ensure(back.is_none(), || {
            format!(
                "set({key:?}, 1, {before}) then set(.., 2, {}): get 2.5 ticks later returned \
                 {back:?}, expected None: set kept the old TTL",
                ShowTtl(ttl)
            )
        })?;
    }
    Ok(())
}

pub(crate) async fn ttls_are_exact_to_the_millisecond(
    p: &Probe<'_>,
    n: &Names,
    t: &mut Timeline,
) -> Result<(), Broken> {
    let ttl = Duration::from_millis(1000);
    let key = n.key("exact");
    p.set(&key, 1, Some(ttl)).await?;
    t.advance(Duration::from_millis(999)).await;
    let back = p.get(&key).await?;
    ensure(back == Some(1), || {
        format!("set({key:?}, 1, TTL 1s): get 999 ms later returned {back:?}, expected Some(1)")
    })?;
    t.advance(Duration::from_millis(1)).await;
    let back = p.get(&key).await?;
    ensure(back.is_none(), || {
        format!(
            "set({key:?}, 1, TTL 1s): get exactly 1 s later returned {back:?}, expected None: \
             a key is missing from its deadline on"
        )
    })
}
