//! Call slots: the count of live calls that `[server] max_calls` limits and `/api/status`
//! reports as `active_calls`.
//!
//! A slot is an owned guard: taken once when a call is admitted (inbound INVITE, campaign,
//! callback, agent leg, transfer), given back exactly once when the guard drops. The call
//! drops it early when it is over but lingers to absorb retransmissions, or late when its
//! task ends; either way nobody can give a slot back twice (the defect that wrapped the
//! counter to `usize::MAX` and refused every inbound call after one campaign call).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The shared counter behind every [`CallSlot`].
#[derive(Debug, Default)]
pub struct CallSlots {
    active: AtomicUsize,
}

impl CallSlots {
    pub fn new() -> Arc<CallSlots> {
        Arc::new(CallSlots::default())
    }

    /// Calls holding a slot now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// A slot if fewer than `max` are taken (the check and the increment are one atomic
    /// step, so two INVITEs racing for the last slot cannot both get it).
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<CallSlot> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| CallSlot {
                slots: self.clone(),
            })
    }

    /// A slot whatever the count: calls the server places itself (campaigns, callbacks,
    /// agent legs) are limited by trunk channels and agents, not by `max_calls`, but they
    /// count as active.
    pub fn acquire(self: &Arc<Self>) -> CallSlot {
        self.active.fetch_add(1, Ordering::AcqRel);
        CallSlot {
            slots: self.clone(),
        }
    }
}

/// One live call's place in [`CallSlots`]; released on drop.
#[derive(Debug)]
pub struct CallSlot {
    slots: Arc<CallSlots>,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.slots.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_once_on_drop() {
        let slots = CallSlots::new();
        let a = slots.acquire();
        let b = slots.try_acquire(10).expect("room");
        assert_eq!(slots.active(), 2);
        drop(a);
        assert_eq!(slots.active(), 1);
        drop(b);
        assert_eq!(slots.active(), 0);
    }

    #[test]
    fn try_acquire_respects_the_limit() {
        let slots = CallSlots::new();
        let held: Vec<_> = (0..3).filter_map(|_| slots.try_acquire(3)).collect();
        assert_eq!(held.len(), 3);
        assert!(slots.try_acquire(3).is_none());
        assert_eq!(slots.active(), 3, "a refused acquire takes nothing");
        drop(held);
        assert!(slots.try_acquire(3).is_some());
        assert_eq!(slots.active(), 0);
    }

    #[test]
    fn concurrent_acquires_never_exceed_the_limit() {
        let slots = CallSlots::new();
        // Nobody gives a slot back before every thread has finished trying.
        let all_tried = std::sync::Barrier::new(4);
        let got: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let slots = slots.clone();
                    let all_tried = &all_tried;
                    s.spawn(move || {
                        let mut kept = Vec::new();
                        for _ in 0..1000 {
                            if let Some(slot) = slots.try_acquire(100) {
                                kept.push(slot);
                            }
                        }
                        all_tried.wait();
                        kept.len()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(got, 100);
        assert_eq!(slots.active(), 0);
    }
}
