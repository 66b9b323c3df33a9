//! The window of recent changes a watch cache keeps, so that a watch
//! resuming from a recent resourceVersion (every informer after a dropped
//! connection) is served from memory instead of a new store watch.

use std::collections::VecDeque;
use std::sync::Arc;

use super::Event;

/// The last `capacity` changes, oldest first, and the revision from which
/// the window is complete: every change after `complete_after` is held.
pub struct Window {
    events: VecDeque<Arc<Event>>,
    capacity: usize,
    complete_after: i64,
}

impl Window {
    /// An empty window over a state read at `revision`.
    pub fn starting_at(revision: i64, capacity: usize) -> Window {
        Window {
            events: VecDeque::new(),
            capacity: capacity.max(1),
            complete_after: revision,
        }
    }

    /// Adds the newest change, forgetting the oldest when full.
    pub fn push(&mut self, event: Arc<Event>) {
        if self.events.len() == self.capacity {
            if let Some(oldest) = self.events.pop_front() {
                // Changes up to the forgotten one's revision may now be
                // missing (several keys can change at one revision).
                self.complete_after = self.complete_after.max(oldest.revision());
            }
        }
        self.events.push_back(event);
    }

    /// The changes after `revision`, oldest first; `None` when some of
    /// them are no longer held.
    pub fn after(&self, revision: i64) -> Option<Vec<Arc<Event>>> {
        if revision < self.complete_after {
            return None;
        }
        let start = self.events.partition_point(|e| e.revision() <= revision);
        Some(self.events.iter().skip(start).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch_cache::Parsed;

    fn put(revision: i64) -> Arc<Event> {
        Arc::new(Event::Put {
            object: Parsed {
                key: b"/registry/pods/a/b".to_vec(),
                revision,
                value: Ok(serde_json::json!({})),
            },
            previous: None,
        })
    }

    fn revisions(events: Option<Vec<Arc<Event>>>) -> Option<Vec<i64>> {
        events.map(|e| e.iter().map(|e| e.revision()).collect())
    }

    #[test]
    fn replays_what_it_holds_and_refuses_what_it_forgot() {
        let mut window = Window::starting_at(10, 3);
        assert_eq!(revisions(window.after(10)), Some(vec![]));
        assert_eq!(revisions(window.after(9)), None, "before the list");
        for r in [11, 12, 12, 14] {
            window.push(put(r));
        }
        // 11 was forgotten: the window is complete after 11 only.
        assert_eq!(revisions(window.after(10)), None);
        assert_eq!(revisions(window.after(11)), Some(vec![12, 12, 14]));
        assert_eq!(revisions(window.after(12)), Some(vec![14]));
        assert_eq!(revisions(window.after(14)), Some(vec![]));
        assert_eq!(revisions(window.after(99)), Some(vec![]));
        // Forgetting one of two changes at 12 makes 12 itself incomplete.
        window.push(put(15));
        assert_eq!(revisions(window.after(11)), None);
        assert_eq!(revisions(window.after(12)), Some(vec![14, 15]));
    }
}
