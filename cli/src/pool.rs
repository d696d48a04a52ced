//! Independent simulated runs spread over OS threads. Each run is a whole
//! turmoil world on one thread, so runs share nothing and a run's result does
//! not depend on which thread ran it or when.

use std::sync::{Mutex, mpsc};

/// Stack for a run's thread: a flash sale has thousands of shopper tasks.
const STACK_BYTES: usize = 16 * 1024 * 1024;

/// The default number of parallel runs: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `work` on every item on up to `jobs` threads and hands each result,
/// with the item's index, to `done` on the calling thread as runs finish.
/// Items are handed out one at a time by the calling thread, so at most
/// `jobs` are in flight; when `done` returns `false` no further item starts
/// (runs already going finish and are still handed over). A panicking run is
/// re-raised here.
pub fn run_all<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
    done: impl FnMut(usize, R) -> bool,
) {
    let order: Vec<usize> = (0..items.len()).collect();
    run_all_in_order(items, &order, jobs, work, done);
}

/// [`run_all`], handing the items out in `order` (a permutation of their
/// indices) — e.g. the longest runs first, so a long run started last does not
/// leave the other cores idle at the end. Results still carry each item's own
/// index. Indices outside `items` are skipped.
pub fn run_all_in_order<T: Sync, R: Send>(
    items: &[T],
    order: &[usize],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
    mut done: impl FnMut(usize, R) -> bool,
) {
    let order: Vec<usize> = order.iter().copied().filter(|&i| i < items.len()).collect();
    let lanes = jobs.clamp(1, items.len().max(1));
    let (work_tx, work_rx) = mpsc::channel::<usize>();
    let work_rx = Mutex::new(work_rx);
    let (result_tx, result_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..lanes)
            .map(|lane| {
                let result_tx = result_tx.clone();
                let (work_rx, work) = (&work_rx, &work);
                std::thread::Builder::new()
                    .name(format!("run-{lane}"))
                    .stack_size(STACK_BYTES)
                    .spawn_scoped(scope, move || {
                        loop {
                            let next = work_rx.lock().map(|rx| rx.recv());
                            let Ok(Ok(i)) = next else { break };
                            if result_tx.send((i, work(&items[i]))).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("the OS can start a thread")
            })
            .collect();
        drop(result_tx);
        let (mut next, mut in_flight, mut open) = (0, 0, true);
        while next < order.len() && in_flight < lanes && work_tx.send(order[next]).is_ok() {
            next += 1;
            in_flight += 1;
        }
        while in_flight > 0 {
            let Ok((i, result)) = result_rx.recv() else {
                break;
            };
            in_flight -= 1;
            open &= done(i, result);
            if open && next < order.len() && work_tx.send(order[next]).is_ok() {
                next += 1;
                in_flight += 1;
            }
        }
        drop(work_tx);
        for handle in handles {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_run_once_and_reported_with_its_index() {
        let items: Vec<u64> = (0..100).collect();
        let mut seen = vec![0u32; items.len()];
        run_all(
            &items,
            3,
            |x| x * 2,
            |i, r| {
                assert_eq!(r, items[i] * 2);
                seen[i] += 1;
                true
            },
        );
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn items_are_handed_out_in_the_given_order() {
        // Proves: with one lane, work starts in exactly the order given (not index order), each
        // result is reported under its own index, and an index past the end is skipped.
        let items: Vec<u64> = vec![10, 20, 30, 40];
        let started = Mutex::new(Vec::new());
        let mut reported = Vec::new();
        run_all_in_order(
            &items,
            &[2, 0, 9, 3, 1],
            1,
            |x| {
                started.lock().unwrap().push(*x);
                *x
            },
            |i, r| {
                reported.push((i, r));
                true
            },
        );
        assert_eq!(started.into_inner().unwrap(), vec![30, 10, 40, 20]);
        assert_eq!(reported, vec![(2, 30), (0, 10), (3, 40), (1, 20)]);
    }

    #[test]
    fn returning_false_stops_new_work() {
        let items: Vec<u64> = (0..1000).collect();
        let started = AtomicUsize::new(0);
        let mut reported = 0;
        run_all(
            &items,
            2,
            |_| {
                started.fetch_add(1, Ordering::Relaxed);
            },
            |_, ()| {
                reported += 1;
                false
            },
        );
        // The first result stops the pool: only the runs already handed
        // out (one per lane) ever start, and each is still reported.
        let started = started.load(Ordering::Relaxed);
        assert_eq!(started, 2);
        assert_eq!(reported, 2);
    }
}
