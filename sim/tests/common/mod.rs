//! Test support shared by the sweep tests.

/// Runs `f` on every item, spread over two threads (the CI machine has two
/// cores); a panic in either lane fails the caller with that panic.
pub fn on_two_cores<T: Sync>(items: &[T], f: impl Fn(&T) + Sync) {
    std::thread::scope(|scope| {
        let lanes: Vec<_> = (0..2usize)
            .map(|lane| {
                let f = &f;
                scope.spawn(move || items.iter().skip(lane).step_by(2).for_each(f))
            })
            .collect();
        for lane in lanes {
            if let Err(panic) = lane.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}
