//! Prompt-prefix reuse: the KV caches of recently finished sequences, kept so that a new
//! request starting with the same tokens (the chat template's system prompt, an earlier turn
//! of the same conversation) forks that part instead of computing it again.
//!
//! Generic over what is stored, so the matching and eviction are tested without a model; the
//! scheduler stores `llm` sessions.

use std::collections::VecDeque;

/// Shorter shared prefixes are recomputed: forking costs a copy and a lookup, and a handful
/// of tokens is cheap to prefill.
pub const MIN_REUSE: usize = 16;

/// Sequences by their tokens, least recently used first, holding at most `max_tokens` tokens
/// in all.
pub struct PrefixCache<S> {
    entries: VecDeque<(Vec<u32>, S)>,
    tokens: usize,
    max_tokens: usize,
}

impl<S> PrefixCache<S> {
    /// A cache of at most `max_tokens` tokens (0 turns reuse off).
    pub fn new(max_tokens: usize) -> Self {
        PrefixCache {
            entries: VecDeque::new(),
            tokens: 0,
            max_tokens,
        }
    }

    /// The entry sharing the longest prefix with `prompt`, and that prefix's length, when it
    /// is at least [`MIN_REUSE`] tokens. The length is at most `prompt.len() - 1`: the last
    /// prompt token is always fed, since its logits pick the first generated token. The entry
    /// becomes the most recently used.
    pub fn longest(&mut self, prompt: &[u32]) -> Option<(&S, usize)> {
        let cap = prompt.len().saturating_sub(1);
        let (index, len) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (tokens, _))| (i, common_prefix(tokens, prompt).min(cap)))
            .max_by_key(|&(i, len)| (len, i))?;
        if len < MIN_REUSE {
            return None;
        }
        let entry = self.entries.remove(index)?;
        self.entries.push_back(entry);
        self.entries.back().map(|(_, s)| (s, len))
    }

    /// Keeps `value`, whose cache holds `tokens`. Entries that are a prefix of `tokens` are
    /// dropped (the new one serves them too); then the least recently used go until the total
    /// fits.
    pub fn insert(&mut self, tokens: Vec<u32>, value: S) {
        if tokens.len() < MIN_REUSE || tokens.len() > self.max_tokens {
            return;
        }
        let mut freed = 0;
        self.entries.retain(|(t, _)| {
            let covered = tokens.starts_with(t);
            if covered {
                freed += t.len();
            }
            !covered
        });
        self.tokens -= freed;
        self.tokens += tokens.len();
        self.entries.push_back((tokens, value));
        while self.tokens > self.max_tokens {
            match self.entries.pop_front() {
                Some((t, _)) => self.tokens -= t.len(),
                None => break,
            }
        }
    }

    /// Tokens held in all.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(start: u32, len: u32) -> Vec<u32> {
        (start..start + len).collect()
    }

    #[test]
    fn finds_the_longest_shared_prefix_and_always_leaves_a_token_to_feed() {
        let mut cache = PrefixCache::new(1000);
        let system = seq(0, 20);
        let mut turn = system.clone();
        turn.extend(seq(100, 30));
        cache.insert(system.clone(), "system");
        cache.insert(seq(500, 40), "other");
        // A longer conversation continues the turn: the whole turn is reused.
        let mut next = turn.clone();
        next.extend(seq(200, 5));
        assert!(
            cache
                .longest(&next)
                .is_some_and(|(s, n)| *s == "system" && n == 20)
        );
        cache.insert(turn.clone(), "turn");
        assert_eq!(
            cache.len(),
            2,
            "the system entry is a prefix of the turn, so it went"
        );
        assert_eq!(cache.longest(&next), Some((&"turn", 50)));
        // The same prompt again: all but its last token.
        assert_eq!(cache.longest(&turn), Some((&"turn", 49)));
        // Too short a match is not worth a fork.
        let mut unrelated = seq(0, 10);
        unrelated.extend(seq(900, 30));
        assert_eq!(cache.longest(&unrelated), None);
        assert_eq!(cache.longest(&[]), None);
    }

    #[test]
    fn evicts_the_least_recently_used_to_stay_within_its_tokens() {
        let mut cache = PrefixCache::new(100);
        cache.insert(seq(0, 40), 'a');
        cache.insert(seq(1000, 40), 'b');
        assert!(cache.longest(&seq(0, 41)).is_some()); // 'a' is now the most recent
        cache.insert(seq(2000, 40), 'c');
        assert_eq!(cache.len(), 2);
        assert!(cache.tokens() <= 100);
        assert_eq!(cache.longest(&seq(1000, 41)), None, "b was evicted");
        assert!(cache.longest(&seq(0, 41)).is_some());
        // Larger than the whole cache, or off: not kept.
        cache.insert(seq(5000, 101), 'd');
        assert_eq!(cache.longest(&seq(5000, 50)), None);
        let mut off = PrefixCache::new(0);
        off.insert(seq(0, 40), 'x');
        assert!(off.is_empty());
    }
}
