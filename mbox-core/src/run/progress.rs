//! The progress bar a run draws on stderr while its input is read (only on a terminal).

use crate::io::dispatch::Progress;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;

/// The progress bar on stderr (only when stderr is a terminal).
pub(super) struct ProgressDisplay {
    bar: indicatif::ProgressBar,
}

impl ProgressDisplay {
    pub(super) fn new() -> Option<ProgressDisplay> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        let style = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}%  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Some(ProgressDisplay { bar })
    }

    pub(super) fn update(&self, p: &Progress) {
        let total = p.total_units.load(Ordering::Relaxed);
        if total > 0 {
            self.bar.set_length(total);
        }
        self.bar.set_position(p.done_units.load(Ordering::Relaxed));
        self.bar.set_message(format!("{} packets", p.packets.load(Ordering::Relaxed)));
    }

    pub(super) fn finish(self) {
        self.bar.finish_and_clear();
    }
}
