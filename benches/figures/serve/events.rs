//! A tracing layer that records the duration of each "lingering close
//! ended" event of the crate.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::Samples;

/// Records the duration field of the crate's "lingering close ended"
/// events: `micros` when the crate has it, else `millis`.
pub(super) struct EndEvents {
    pub(super) values: Samples,
    pub(super) micros_seen: Arc<AtomicBool>,
}

#[derive(Default)]
struct Fields {
    is_end: bool,
    millis: Option<u64>,
    micros: Option<u64>,
}

impl tracing::field::Visit for Fields {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "millis" => self.millis = Some(value),
            "micros" => self.micros = Some(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.is_end = format!("{value:?}") == "lingering close ended";
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EndEvents {
    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        metadata.target().starts_with("linger")
    }

    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if !fields.is_end {
            return;
        }
        let value = match (fields.micros, fields.millis) {
            (Some(us), _) => {
                self.micros_seen
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                us
            }
            (None, Some(ms)) => ms,
            (None, None) => return,
        };
        self.values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(value);
    }
}
