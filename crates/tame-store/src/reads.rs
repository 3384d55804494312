//! Bounded reads shared by both backends: which of a session's decisions
//! (counted from its newest) a page of its log holds, and the page's
//! entries assembled from their records.

use crate::LogEntry;
use crate::record::entries_from_records;

/// A page of a session's log as newest-first ordinals of its decisions:
/// the newest decision is 1, the oldest `total`. The page holds the
/// ordinals `skip + 1 ..= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub skip: u64,
    pub end: u64,
}

impl Window {
    /// The page `offset..offset + limit` of a log of `total` entries in log
    /// order (oldest first); `None` when it holds no entry.
    pub(crate) fn of_page(total: u64, offset: u64, limit: u64) -> Option<Window> {
        if limit == 0 || offset >= total {
            return None;
        }
        let last = offset.saturating_add(limit).min(total);
        Some(Window {
            skip: total - last,
            end: total - offset,
        })
    }
}

/// Log entries from records `(seq, kind, body)` of decisions and of their
/// results, in any order: the entries come out in log order, each decision
/// with its results applied.
pub(crate) fn entries(mut records: Vec<(u64, String, String)>) -> Vec<LogEntry> {
    records.sort_by_key(|r| r.0);
    records.dedup_by_key(|r| r.0);
    entries_from_records(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pages_at_the_edges() {
        // 250 entries, pages of 100: the first page is the oldest.
        assert_eq!(Window::of_page(250, 0, 100), Some(Window { skip: 150, end: 250 }));
        assert_eq!(Window::of_page(250, 100, 100), Some(Window { skip: 50, end: 150 }));
        assert_eq!(Window::of_page(250, 200, 100), Some(Window { skip: 0, end: 50 }));
        assert_eq!(Window::of_page(250, 250, 100), None);
        assert_eq!(Window::of_page(250, u64::MAX, u64::MAX), None);
        assert_eq!(Window::of_page(0, 0, 100), None);
        assert_eq!(Window::of_page(5, 0, 0), None);
        assert_eq!(Window::of_page(5, 1, u64::MAX), Some(Window { skip: 0, end: 4 }));
    }

    proptest! {
        /// The window names exactly the entries a slice of the whole log
        /// would hold.
        #[test]
        fn a_window_is_the_slice_of_the_log(total in 0u64..300, offset in 0u64..400, limit in 0u64..400) {
            let oldest_first: Vec<u64> = (1..=total).rev().collect();
            let sliced: Vec<u64> = oldest_first
                .iter()
                .skip(usize::try_from(offset).unwrap())
                .take(usize::try_from(limit).unwrap())
                .copied()
                .collect();
            let from_window: Vec<u64> = match Window::of_page(total, offset, limit) {
                Some(w) => (w.skip + 1..=w.end).rev().collect(),
                None => Vec::new(),
            };
            prop_assert_eq!(sliced, from_window);
        }
    }
}
