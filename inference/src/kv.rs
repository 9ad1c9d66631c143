//! Per-session KV caches of a generation stage, bounded in count, memory and idle time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Keys and values of one block for one session: `[1, kv_heads, tokens, head_dim]` each.
pub type LayerKv = Option<(Tensor, Tensor)>;

/// Bounds on the caches a stage keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvCacheConfig {
    /// Most sessions cached at once; the least recently used is evicted beyond it.
    pub max_sessions: usize,
    /// Most bytes of keys and values cached at once, all sessions together; least recently
    /// used sessions are evicted beyond it.
    pub max_bytes: usize,
    /// A session unused for this long is evicted.
    pub idle_timeout: Duration,
}

impl Default for KvCacheConfig {
    fn default() -> Self {
        Self {
            max_sessions: 64,
            max_bytes: 1 << 30,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// The caches of one session in one stage.
#[derive(Debug)]
pub struct SessionKv {
    layers: Vec<LayerKv>,
    position: usize,
    last_used: Instant,
    lru: u64,
}

impl SessionKv {
    /// The cache of the stage's `i`-th block.
    pub fn layer_mut(&mut self, i: usize) -> &mut LayerKv {
        &mut self.layers[i]
    }

    /// Records that `tokens` more tokens were processed.
    pub fn advance(&mut self, tokens: usize) {
        self.position += tokens;
    }

    /// Tokens processed so far.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Bytes held by keys and values.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|(k, v)| {
                k.elem_count() * k.dtype().size_in_bytes()
                    + v.elem_count() * v.dtype().size_in_bytes()
            })
            .sum()
    }
}

/// The KV caches of a stage, by session id.
#[derive(Debug)]
pub struct KvCacheStore {
    cfg: KvCacheConfig,
    layers: usize,
    sessions: BTreeMap<u64, SessionKv>,
    tick: u64,
}

impl KvCacheStore {
    /// An empty store for a stage of `layers` blocks.
    pub fn new(cfg: KvCacheConfig, layers: usize) -> Result<Self> {
        if cfg.max_sessions == 0 {
            return Err(Error::field(
                "KvCacheConfig",
                "max_sessions",
                "must be at least 1",
            ));
        }
        if cfg.max_bytes == 0 {
            return Err(Error::field(
                "KvCacheConfig",
                "max_bytes",
                "must be at least 1",
            ));
        }
        Ok(Self {
            cfg,
            layers,
            sessions: BTreeMap::new(),
            tick: 0,
        })
    }

    /// Takes a session's cache out of the store to process tokens from `position` on.
    ///
    /// Position 0 starts the session afresh. Any other position must equal the number of
    /// tokens the session has processed; an unknown (never started, ended or evicted)
    /// session must restart from position 0.
    pub fn checkout(&mut self, session: u64, position: usize, now: Instant) -> Result<SessionKv> {
        self.evict_idle(now);
        if position == 0 {
            self.sessions.remove(&session);
            return Ok(SessionKv {
                layers: vec![None; self.layers],
                position: 0,
                last_used: now,
                lru: 0,
            });
        }
        let entry = self.sessions.remove(&session).ok_or_else(|| Error::Session {
            session,
            reason: format!(
                "no cache for position {position} (never started, ended or evicted): restart at position 0"
            ),
        })?;
        if entry.position != position {
            let expected = entry.position;
            self.sessions.insert(session, entry);
            return Err(Error::Session {
                session,
                reason: format!("activation at position {position}, expected {expected}"),
            });
        }
        Ok(entry)
    }

    /// Puts a session's cache back and evicts others to stay within bounds. Fails, dropping
    /// the session, if it alone exceeds the memory bound.
    pub fn checkin(&mut self, session: u64, mut kv: SessionKv, now: Instant) -> Result<()> {
        let bytes = kv.bytes();
        if bytes > self.cfg.max_bytes {
            return Err(Error::TooLarge {
                what: "KV cache bytes of one session",
                got: bytes,
                limit: self.cfg.max_bytes,
            });
        }
        self.tick += 1;
        kv.lru = self.tick;
        kv.last_used = now;
        self.sessions.insert(session, kv);
        while self.sessions.len() > self.cfg.max_sessions || self.bytes() > self.cfg.max_bytes {
            let Some(victim) = self
                .sessions
                .iter()
                .filter(|(id, _)| **id != session)
                .min_by_key(|(_, s)| s.lru)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.sessions.remove(&victim);
        }
        Ok(())
    }

    /// Drops a session's cache; returns whether it existed.
    pub fn end_session(&mut self, session: u64) -> bool {
        self.sessions.remove(&session).is_some()
    }

    /// Drops the sessions idle for longer than the timeout, returning their ids.
    pub fn evict_idle(&mut self, now: Instant) -> Vec<u64> {
        let timeout = self.cfg.idle_timeout;
        let idle: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_used) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in &idle {
            self.sessions.remove(id);
        }
        idle
    }

    /// Number of cached sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is cached.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether `session` is cached.
    pub fn contains(&self, session: u64) -> bool {
        self.sessions.contains_key(&session)
    }

    /// Tokens `session` has processed, if cached.
    pub fn position(&self, session: u64) -> Option<usize> {
        self.sessions.get(&session).map(|s| s.position)
    }

    /// Bytes of keys and values cached, all sessions together.
    pub fn bytes(&self) -> usize {
        self.sessions.values().map(SessionKv::bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn fill(store: &mut KvCacheStore, session: u64, tokens: usize, now: Instant) -> Result<()> {
        let pos = store.position(session).unwrap_or(0);
        let mut kv = store.checkout(session, pos, now)?;
        let t = Tensor::zeros((1, 1, tokens, 4), DType::F32, &Device::Cpu).unwrap();
        *kv.layer_mut(0) = Some((t.clone(), t));
        kv.advance(tokens);
        store.checkin(session, kv, now)
    }

    #[test]
    fn evicts_least_recently_used_beyond_count() {
        let cfg = KvCacheConfig {
            max_sessions: 2,
            ..Default::default()
        };
        let mut store = KvCacheStore::new(cfg, 1).unwrap();
        let now = Instant::now();
        fill(&mut store, 1, 2, now).unwrap();
        fill(&mut store, 2, 2, now).unwrap();
        fill(&mut store, 1, 2, now).unwrap(); // 1 is now more recent than 2
        fill(&mut store, 3, 2, now).unwrap();
        assert!(store.contains(1) && store.contains(3) && !store.contains(2));
        assert_eq!(store.position(1), Some(4));
    }

    #[test]
    fn evicts_beyond_memory_and_rejects_a_session_too_large_alone() {
        // One session of 8 tokens: 2 tensors x 8 x 4 floats x 4 bytes = 256 bytes.
        let cfg = KvCacheConfig {
            max_bytes: 300,
            ..Default::default()
        };
        let mut store = KvCacheStore::new(cfg, 1).unwrap();
        let now = Instant::now();
        fill(&mut store, 1, 8, now).unwrap();
        fill(&mut store, 2, 8, now).unwrap();
        assert!(!store.contains(1) && store.contains(2));
        assert_eq!(store.bytes(), 256);
        assert!(matches!(
            fill(&mut store, 3, 16, now),
            Err(Error::TooLarge { .. })
        ));
        assert!(!store.contains(3));
    }

    #[test]
    fn positions_are_checked_and_idle_sessions_expire() {
        let cfg = KvCacheConfig {
            idle_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let mut store = KvCacheStore::new(cfg, 1).unwrap();
        let now = Instant::now();
        fill(&mut store, 7, 3, now).unwrap();
        assert!(matches!(
            store.checkout(7, 2, now),
            Err(Error::Session { .. })
        ));
        assert!(store.contains(7), "a rejected activation keeps the session");
        assert!(matches!(
            store.checkout(8, 1, now),
            Err(Error::Session { .. })
        ));
        assert_eq!(store.evict_idle(now + Duration::from_secs(6)), vec![7]);
        assert!(store.is_empty());
        fill(&mut store, 9, 1, now).unwrap();
        assert!(store.end_session(9));
        assert!(!store.end_session(9));
    }
}
