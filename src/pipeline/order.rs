//! Results back in the order their frames were sent. Several engine workers run a
//! model's batches at once, so a camera's frames can come back out of order (a slow
//! batch, a busy host); its detectors' temporal rules (N-of-M confirmation, cooldowns)
//! assume stream order. Every frame sent to a model is numbered, and every one comes
//! back exactly once: with its result, or as dropped (replaced, stale, failed). This
//! buffer releases them in number order per model. Should an answer ever go missing,
//! it waits for at most `max_held` later ones before skipping the gap, so a camera
//! never stalls.

use std::collections::BTreeMap;

/// One camera's reorder buffer, per model.
#[derive(Debug)]
pub struct InOrder<T> {
    /// The number each model's next release must carry.
    next: BTreeMap<usize, u64>,
    /// Answers that came early, per model, by number.
    held: BTreeMap<usize, BTreeMap<u64, T>>,
    max_held: usize,
}

impl<T> InOrder<T> {
    /// A buffer holding at most `max_held` early answers per model; numbers start at 1.
    pub fn new(max_held: usize) -> Self {
        Self {
            next: BTreeMap::new(),
            held: BTreeMap::new(),
            max_held: max_held.max(1),
        }
    }

    /// Takes model `model`'s answer number `seq`; returns what can now be released,
    /// in order. An answer older than one already released (after a skipped gap) is
    /// released at once.
    pub fn push(&mut self, model: usize, seq: u64, item: T) -> Vec<T> {
        let next = self.next.entry(model).or_insert(1);
        if seq < *next {
            return vec![item];
        }
        let held = self.held.entry(model).or_default();
        held.insert(seq, item);
        let mut out = Vec::new();
        loop {
            if let Some(item) = held.remove(next) {
                out.push(item);
                *next += 1;
            } else if held.len() > self.max_held {
                // An answer went missing: skip to the oldest one held.
                if let Some((&first, _)) = held.first_key_value() {
                    *next = first;
                }
            } else {
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InOrder;

    #[test]
    fn answers_are_released_in_number_order_per_model() {
        let mut order = InOrder::new(8);
        assert_eq!(order.push(0, 2, "b"), Vec::<&str>::new());
        assert_eq!(order.push(1, 1, "x"), ["x"], "another model is independent");
        assert_eq!(order.push(0, 1, "a"), ["a", "b"]);
        assert_eq!(order.push(0, 3, "c"), ["c"]);
        assert_eq!(order.push(0, 5, "e"), Vec::<&str>::new());
        assert_eq!(order.push(0, 4, "d"), ["d", "e"]);
    }

    #[test]
    fn a_missing_answer_costs_a_bounded_wait_then_is_skipped() {
        let mut order = InOrder::new(2);
        // Number 1 never comes back.
        assert!(order.push(0, 2, 2).is_empty());
        assert!(order.push(0, 3, 3).is_empty());
        assert_eq!(order.push(0, 4, 4), [2, 3, 4]);
        // It turns up after all: too late to wait for, handed on at once.
        assert_eq!(order.push(0, 1, 1), [1]);
        assert_eq!(order.push(0, 5, 5), [5]);
    }
}
