//! `--json`: one JSON object per line on stdout, for scripts and other
//! programs. Every object has `"event"` (its kind) and `"t"` (seconds since
//! the command started); the kinds are listed in the README.
//!
//! Progress events come at most [`PROGRESS_EVERY`] apart. Human text keeps
//! going to stderr; with `--json` nothing but events goes to stdout.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Least time between two progress events.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Where events go: nowhere (the default) or stdout.
#[derive(Debug, Clone, Default)]
pub struct Events(Option<Arc<Sink>>);

#[derive(Debug)]
struct Sink {
    started: Instant,
    /// When the last progress event went out.
    last_progress: Mutex<Option<Instant>>,
}

impl Events {
    /// Events on stdout when `enabled`, else none.
    #[must_use]
    pub fn new(enabled: bool) -> Self {
        Events(enabled.then(|| {
            Arc::new(Sink {
                started: Instant::now(),
                last_progress: Mutex::new(None),
            })
        }))
    }

    /// Whether events are written (and human text kept off stdout).
    #[must_use]
    pub fn on(&self) -> bool {
        self.0.is_some()
    }

    /// Writes one event: `fields` (an object) plus `event` and `t`.
    pub fn emit(&self, event: &str, fields: Value) {
        let Some(sink) = &self.0 else { return };
        let mut obj = serde_json::Map::new();
        obj.insert("event".into(), event.into());
        obj.insert(
            "t".into(),
            json!((sink.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
        );
        if let Value::Object(more) = fields {
            obj.extend(more);
        }
        let line = Value::Object(obj).to_string();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// A progress event, unless one went out less than [`PROGRESS_EVERY`]
    /// ago (`last` forces one: the final figures).
    pub fn progress(&self, bytes: u64, total: u64, last: bool) {
        let Some(sink) = &self.0 else { return };
        {
            let Ok(mut prev) = sink.last_progress.lock() else {
                return;
            };
            let now = Instant::now();
            if !last && prev.is_some_and(|p| now.duration_since(p) < PROGRESS_EVERY) {
                return;
            }
            *prev = Some(now);
        }
        self.emit("progress", json!({ "bytes": bytes, "total": total }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_throttled_but_the_last_one_always_goes() {
        let e = Events::new(true);
        let sink = e.0.as_ref().unwrap().clone();
        e.progress(1, 10, false);
        let first = *sink.last_progress.lock().unwrap();
        e.progress(2, 10, false);
        assert_eq!(*sink.last_progress.lock().unwrap(), first, "throttled");
        e.progress(10, 10, true);
        assert_ne!(*sink.last_progress.lock().unwrap(), first, "forced");
        assert!(!Events::new(false).on());
    }
}
