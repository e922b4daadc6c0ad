//! One heap block for a future, used again and again while the futures put
//! in it finish at their first poll.
//!
//! Why: the UDP loop tries every query's answer once in place and gives the
//! few that must wait (an upstream, a slow plugin) a task of their own, so
//! each answer's future has to live on the heap from the start (a pinned
//! future cannot move into a task later). Boxing it afresh cost an
//! allocation and a free per query, most of whose answers (zones, cache
//! hits) finish at once.

use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

pub(crate) struct FutureSlot<F> {
    spare: Option<Box<MaybeUninit<F>>>,
}

impl<F: Future> FutureSlot<F> {
    pub(crate) fn new() -> Self {
        FutureSlot { spare: None }
    }

    /// Polls `future` once (with a waker that does nothing, as
    /// `now_or_never`). Its output if it finished; else the future, boxed,
    /// for a task to poll on (the task's first poll registers its waker).
    pub(crate) fn poll_once(&mut self, future: F) -> Result<F::Output, Pin<Box<F>>> {
        let block = self.spare.take().unwrap_or_else(Box::new_uninit);
        let mut pinned = Box::into_pin(Box::write(block, future));
        match pinned
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Pending => Err(pinned),
            Poll::Ready(output) => {
                // SAFETY: the pointer is not moved out of; the future is
                // dropped where it lies, ending its pinned life in place,
                // and its block, no longer holding a value, becomes the
                // spare (MaybeUninit<F> has F's layout).
                let raw = Box::into_raw(unsafe { Pin::into_inner_unchecked(pinned) });
                unsafe { std::ptr::drop_in_place(raw) };
                self.spare = Some(unsafe { Box::from_raw(raw.cast::<MaybeUninit<F>>()) });
                Ok(output)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its drops.
    struct Tracked(Arc<AtomicUsize>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn answer(value: u32, held: Tracked, wait: bool) -> u32 {
        let _held = held;
        if wait {
            tokio::task::yield_now().await;
        }
        value
    }

    #[test]
    fn a_finished_future_leaves_its_block_for_the_next() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut slot = FutureSlot::new();
        let mut blocks = Vec::new();
        for value in 0..4 {
            let output = slot.poll_once(answer(value, Tracked(drops.clone()), false));
            assert_eq!(output.ok(), Some(value));
            blocks.push(slot.spare.as_deref().map(|b| b as *const _ as usize));
        }
        assert_eq!(drops.load(Ordering::SeqCst), 4, "each future dropped once");
        assert!(
            blocks.windows(2).all(|w| w[0] == w[1]),
            "one block: {blocks:?}"
        );
    }

    #[tokio::test]
    async fn a_waiting_future_goes_on_boxed_and_the_slot_makes_a_new_block() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut slot = FutureSlot::new();
        assert_eq!(
            slot.poll_once(answer(1, Tracked(drops.clone()), false))
                .ok(),
            Some(1)
        );
        let waiting = match slot.poll_once(answer(2, Tracked(drops.clone()), true)) {
            Err(waiting) => waiting,
            Ok(_) => panic!("a yielding future cannot finish at its first poll"),
        };
        assert!(
            slot.spare.is_none(),
            "the block went with the waiting future"
        );
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(tokio::spawn(waiting).await.unwrap(), 2);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(
            slot.poll_once(answer(3, Tracked(drops.clone()), false))
                .ok(),
            Some(3)
        );
        assert!(slot.spare.is_some());
    }

    #[test]
    fn dropping_the_slot_frees_its_spare_block_without_dropping_a_value() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut slot = FutureSlot::new();
        let _ = slot.poll_once(answer(1, Tracked(drops.clone()), false));
        drop(slot);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
