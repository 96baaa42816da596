//! Safe retries: a publish repeated with the same idempotency key (the
//! `Idempotency-Key` header, or an event id the publisher chose) within the
//! window returns the first result, marked as a duplicate, instead of writing
//! the event twice. Reusing a key for a different event is a conflict.
//!
//! Concurrent repeats wait for the first attempt and share its outcome; a
//! failed attempt is forgotten, so the retry really retries.
//!
//! Known limits, for now: the memory of keys is per host instance and does
//! not survive a restart, so a retry that reaches another instance, or comes
//! after a restart, is written again (with the same event id, so consumers can
//! still drop it). A shared store comes with the event store.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::{ApiError, Code};
use crate::publish::Published;

/// How long a key is remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Most keys remembered; the oldest are forgotten first.
pub const CAPACITY: usize = 100_000;

type Outcome = Option<Result<Published, ()>>;

enum Slot {
    InFlight {
        fingerprint: u64,
        done_rx: watch::Receiver<Outcome>,
    },
    Done {
        fingerprint: u64,
        published: Published,
        at: Instant,
    },
}

/// What a caller should do with a key.
pub enum Claim {
    /// First time: publish, then call [`Idempotency::finish`].
    Proceed(watch::Sender<Outcome>),
    /// Seen before: this is the first result.
    Duplicate(Published),
}

/// The keys seen recently.
#[derive(Default)]
pub struct Idempotency {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    slots: HashMap<String, Slot>,
    order: VecDeque<(Instant, String)>,
}

impl State {
    fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front() {
            if now.duration_since(*at) < WINDOW && self.slots.len() <= CAPACITY {
                break;
            }
            if let Some(Slot::Done { at: done_at, .. }) = self.slots.get(key)
                && done_at == at
            {
                self.slots.remove(key);
            }
            self.order.pop_front();
        }
    }
}

impl Idempotency {
    /// Claims a key for an event with this fingerprint, waiting for an
    /// attempt already in flight.
    pub async fn claim(&self, key: &str, fingerprint: u64) -> Result<Claim, ApiError> {
        loop {
            let mut waiting = {
                let mut state = self.state.lock().expect("idempotency lock");
                state.expire(Instant::now());
                match state.slots.get(key) {
                    Some(Slot::Done {
                        fingerprint: seen,
                        published,
                        ..
                    }) => {
                        if *seen != fingerprint {
                            return Err(conflict(key));
                        }
                        return Ok(Claim::Duplicate(published.clone()));
                    }
                    Some(Slot::InFlight {
                        fingerprint: seen,
                        done_rx,
                    }) => {
                        if *seen != fingerprint {
                            return Err(conflict(key));
                        }
                        done_rx.clone()
                    }
                    None => {
                        let (done_tx, done_rx) = watch::channel(None);
                        state.slots.insert(
                            key.to_string(),
                            Slot::InFlight {
                                fingerprint,
                                done_rx,
                            },
                        );
                        return Ok(Claim::Proceed(done_tx));
                    }
                }
            };
            // Another request is publishing this key; its outcome decides.
            let _ = waiting.wait_for(Option::is_some).await;
        }
    }

    /// Records the outcome of a claimed key.
    pub fn finish(
        &self,
        key: &str,
        fingerprint: u64,
        done_tx: &watch::Sender<Outcome>,
        result: &Result<Published, ApiError>,
    ) {
        let mut state = self.state.lock().expect("idempotency lock");
        match result {
            Ok(published) => {
                let now = Instant::now();
                state.slots.insert(
                    key.to_string(),
                    Slot::Done {
                        fingerprint,
                        published: published.clone(),
                        at: now,
                    },
                );
                state.order.push_back((now, key.to_string()));
                state.expire(now);
                done_tx.send_replace(Some(Ok(published.clone())));
            }
            Err(_) => {
                state.slots.remove(key);
                done_tx.send_replace(Some(Err(())));
            }
        }
    }
}

fn conflict(key: &str) -> ApiError {
    ApiError::new(
        Code::IdempotencyConflict,
        format!(
            "idempotency key `{}` was already used for a different event in the last {} minutes; use a new key for a new event",
            key.escape_debug(),
            WINDOW.as_secs() / 60
        ),
    )
    .with_stored(crate::error::Stored::No)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(offset: i64) -> Published {
        Published {
            id: "e1".into(),
            topic: "claim".into(),
            partition: 0,
            offset,
            schema_id: 1,
            duplicate: false,
        }
    }

    #[tokio::test]
    async fn a_repeat_gets_the_first_result() {
        let keys = Idempotency::default();
        let Claim::Proceed(done_tx) = keys.claim("k", 7).await.unwrap() else {
            panic!("first claim proceeds")
        };
        keys.finish("k", 7, &done_tx, &Ok(published(41)));
        let Claim::Duplicate(first) = keys.claim("k", 7).await.unwrap() else {
            panic!("repeat is a duplicate")
        };
        assert_eq!(first.offset, 41);
        let error = keys
            .claim("k", 8)
            .await
            .err()
            .expect("different event, same key");
        assert_eq!(error.code, Code::IdempotencyConflict);
    }

    #[tokio::test]
    async fn a_failed_attempt_is_forgotten() {
        let keys = Idempotency::default();
        let Claim::Proceed(done_tx) = keys.claim("k", 1).await.unwrap() else {
            panic!()
        };
        keys.finish(
            "k",
            1,
            &done_tx,
            &Err(ApiError::new(Code::KafkaUnavailable, "down")),
        );
        assert!(matches!(
            keys.claim("k", 1).await.unwrap(),
            Claim::Proceed(_)
        ));
    }

    #[tokio::test]
    async fn a_concurrent_repeat_waits_for_the_first() {
        let keys = std::sync::Arc::new(Idempotency::default());
        let Claim::Proceed(done_tx) = keys.claim("k", 1).await.unwrap() else {
            panic!()
        };
        let waiter = {
            let keys = std::sync::Arc::clone(&keys);
            tokio::spawn(async move {
                keys.claim("k", 1)
                    .await
                    .map(|c| matches!(c, Claim::Duplicate(_)))
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        keys.finish("k", 1, &done_tx, &Ok(published(3)));
        assert!(waiter.await.unwrap().unwrap());
    }
}
