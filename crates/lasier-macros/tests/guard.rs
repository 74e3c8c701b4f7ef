//! `#[circuit_breaker]` on the fns a user writes: sync and async, free fns
//! and methods, a `static` breaker, `?` in the body, generics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use std::sync::LazyLock;

use lasier_macros::circuit_breaker;

#[derive(Debug, PartialEq)]
enum DbError {
    Down,
    NotFound,
}

impl From<std::num::ParseIntError> for DbError {
    fn from(_: std::num::ParseIntError) -> Self {
        Self::Down
    }
}

mod sync {
    use super::*;
    use lasier_sync::{CircuitBreaker, Error};

    static USERS: LazyLock<CircuitBreaker> = LazyLock::new(|| {
        CircuitBreaker::builder("macros-sync-users")
            .max_failures(2)
            .build()
            .unwrap()
    });

    thread_local! {
        static RUNS: Cell<u32> = const { Cell::new(0) };
    }

    /// `?` converts the body's errors with `From`, into the body's own
    /// error type.
    #[circuit_breaker(USERS)]
    fn user_id(raw: &str) -> Result<u32, Error<DbError>> {
        RUNS.with(|runs| runs.set(runs.get() + 1));
        let id: u32 = raw.parse()?;
        if id == 0 {
            return Err(DbError::NotFound);
        }
        Ok(id)
    }

    #[test]
    fn a_static_breaker_guards_a_sync_fn_and_opens_on_its_errors() {
        assert_eq!(user_id("7").unwrap(), 7);
        assert!(matches!(user_id("x"), Err(Error::Inner(DbError::Down))));
        assert!(matches!(user_id("0"), Err(Error::Inner(DbError::NotFound))));
        let runs = RUNS.with(Cell::get);

        let rejected = user_id("7").unwrap_err();
        assert!(rejected.is_open());
        assert_eq!(
            RUNS.with(Cell::get),
            runs,
            "the body ran on an open circuit"
        );
    }

    struct Repo {
        breaker: CircuitBreaker,
        calls: u32,
    }

    impl Repo {
        /// Only `Down` counts as a failure (the original's `catch_exceptions`).
        #[circuit_breaker(self.breaker, is_failure = |e: &DbError| *e == DbError::Down)]
        fn find(&self, id: u32) -> Result<u32, Error<DbError>> {
            match id {
                0 => Err(DbError::NotFound),
                1 => Err(DbError::Down),
                id => Ok(id),
            }
        }

        /// A generic method with an `impl Trait` argument.
        #[circuit_breaker(&self.breaker)]
        fn parse<T: std::str::FromStr>(&self, raw: impl AsRef<str>) -> Result<T, Error<T::Err>> {
            raw.as_ref().parse()
        }

        /// The body may change `self`'s other fields.
        #[circuit_breaker(self.breaker)]
        fn count(&mut self) -> Result<u32, Error<DbError>> {
            self.calls += 1;
            Ok(self.calls)
        }
    }

    #[test]
    fn a_method_guards_with_its_own_breaker_and_predicate() {
        let mut repo = Repo {
            breaker: CircuitBreaker::builder("macros-sync-repo")
                .max_failures(1)
                .build()
                .unwrap(),
            calls: 0,
        };
        // NotFound is returned, and does not count.
        for _ in 0..3 {
            assert!(matches!(repo.find(0), Err(Error::Inner(DbError::NotFound))));
        }
        assert_eq!(repo.find(5).unwrap(), 5);
        assert_eq!(repo.parse::<u8>("12").unwrap(), 12);
        assert_eq!(repo.count().unwrap(), 1);
        assert_eq!(repo.count().unwrap(), 2);

        // Down counts: one is enough to open.
        assert!(matches!(repo.find(1), Err(Error::Inner(DbError::Down))));
        assert!(repo.find(5).unwrap_err().is_open());
        assert!(repo.parse::<u8>("12").unwrap_err().is_open());
        assert!(repo.count().unwrap_err().is_open());
        assert_eq!(repo.calls, 2, "the body ran on an open circuit");
    }
}

mod future {
    use super::*;
    use lasier_async::{CircuitBreaker, Error};

    static ORDERS: LazyLock<CircuitBreaker> = LazyLock::new(|| {
        CircuitBreaker::builder("macros-async-orders")
            .max_failures(2)
            .build()
            .unwrap()
    });

    async fn fetch(id: u32) -> Result<u32, DbError> {
        if id == 0 {
            Err(DbError::Down)
        } else {
            Ok(id * 10)
        }
    }

    #[circuit_breaker(ORDERS)]
    async fn order_total(raw: String) -> Result<u32, Error<DbError>> {
        let id: u32 = raw.parse()?;
        let total = fetch(id).await?;
        Ok(total)
    }

    /// A body that only awaits a future: still a lazy `async` block, so
    /// the future is not even created on an open circuit.
    #[circuit_breaker(ORDERS)]
    async fn order_by_id(id: u32) -> Result<u32, Error<DbError>> {
        fetch(id).await
    }

    #[tokio::test]
    async fn a_static_breaker_guards_an_async_fn_and_opens_on_its_errors() {
        assert_eq!(order_total("4".into()).await.unwrap(), 40);
        assert_eq!(order_by_id(5).await.unwrap(), 50);
        assert!(matches!(
            order_total("0".into()).await,
            Err(Error::Inner(DbError::Down))
        ));
        assert!(matches!(
            order_total("x".into()).await,
            Err(Error::Inner(DbError::Down))
        ));
        assert!(order_total("4".into()).await.unwrap_err().is_open());
        assert!(order_by_id(4).await.unwrap_err().is_open());
    }

    struct Client {
        breaker: CircuitBreaker,
        base: u32,
        sent: Vec<u32>,
    }

    impl Client {
        #[circuit_breaker(self.breaker)]
        async fn get(&self, id: u32) -> Result<u32, Error<DbError>> {
            let value = fetch(id).await?;
            Ok(self.base + value)
        }

        #[circuit_breaker(self.breaker)]
        async fn send(&mut self, id: u32) -> Result<usize, Error<DbError>> {
            fetch(id).await?;
            self.sent.push(id);
            Ok(self.sent.len())
        }
    }

    #[tokio::test]
    async fn async_methods_guard_with_a_field_breaker() {
        let mut client = Client {
            breaker: CircuitBreaker::builder("macros-async-client")
                .max_failures(1)
                .build()
                .unwrap(),
            base: 1,
            sent: Vec::new(),
        };
        assert_eq!(client.get(2).await.unwrap(), 21);
        assert_eq!(client.send(3).await.unwrap(), 1);
        assert!(matches!(
            client.get(0).await,
            Err(Error::Inner(DbError::Down))
        ));
        let rejected = client.get(2).await.unwrap_err();
        assert!(rejected.is_open());
        assert!(rejected.retry_after().is_some());
        assert!(client.send(3).await.unwrap_err().is_open());
        assert_eq!(client.sent, [3], "the body ran on an open circuit");
    }
}
