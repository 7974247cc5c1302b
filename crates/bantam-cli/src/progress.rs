//! indicatif progress bars for store operations.

use std::sync::Mutex;

use bantam_store::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// Draws one bar per phase on stderr (hidden when stderr is not a terminal).
#[derive(Default)]
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn phase(&self, label: &str, total: Option<u64>) {
        let bar = match total {
            Some(t) => {
                let b = ProgressBar::new(t);
                b.set_style(
                    ProgressStyle::with_template(
                        "{msg:32} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b
            }
            None => {
                let b = ProgressBar::new_spinner();
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                b
            }
        };
        bar.set_message(label.to_string());
        if let Ok(mut g) = self.bar.lock() {
            if let Some(old) = g.take() {
                old.finish_and_clear();
            }
            *g = Some(bar);
        }
    }

    fn position(&self, done: u64) {
        if let Ok(g) = self.bar.lock() {
            if let Some(b) = g.as_ref() {
                b.set_position(done);
            }
        }
    }

    fn done(&self) {
        if let Ok(mut g) = self.bar.lock() {
            if let Some(b) = g.take() {
                b.finish_and_clear();
            }
        }
    }

    fn note(&self, msg: &str) {
        eprintln!("{msg}");
    }
}
