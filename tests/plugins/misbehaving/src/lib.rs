//! A router that misbehaves on purpose. Its `mode` config picks how:
//!
//! - `ok`: routes to `fixtures.ok`.
//! - `loop`: spins forever without calling the host.
//! - `grow-memory`: allocates until the memory limit stops it.
//! - `panic`: panics (a trap).
//! - `stack-overflow`: recurses without end.
//! - `many-outputs`: returns 100 000 destinations.
//! - `huge-output`: returns 12 destinations of 1 MiB each.
//! - `partial-then-trap`: logs three lines, then panics.
//! - `slow`: busy-waits `spin_ms` on the clock (needs the `clock` grant).
//! - `echo-size`: routes to `size.<bytes of the object>`.
//! - `clock`: routes to `time.<seconds since the epoch>` as the plugin sees it.
//!
//! With `only_key` set, events of any other key are dropped (an empty
//! route) before the mode applies, so a pipeline test can aim the
//! misbehaviour at its own events only.

use std::hint::black_box;

use switchyard_plugin_sdk::{
    ConfigEntry, Event, Level, PluginError, Router, config_value, export_router, log,
};

struct Misbehaving;

fn recurse(depth: u64, pad: [u8; 256]) -> u64 {
    // Never true; it keeps the compiler from calling this a mistake.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let pad = black_box(pad);
    black_box(recurse(depth + 1, pad)) + u64::from(pad[0])
}

impl Router for Misbehaving {
    fn route(event: Event, config: Vec<ConfigEntry>) -> Result<Vec<String>, PluginError> {
        if let Some(only_key) = config_value(&config, "only_key")
            && event.metadata.key != only_key
        {
            return Ok(Vec::new());
        }
        match config_value(&config, "mode").unwrap_or("ok") {
            "ok" => Ok(vec!["fixtures.ok".to_string()]),
            "loop" => {
                let mut counter = 0_u64;
                loop {
                    counter = black_box(counter.wrapping_add(1));
                }
            }
            "grow-memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![7_u8; 1 << 20]));
                }
            }
            "panic" => panic!("deliberate panic in the misbehaving fixture"),
            "stack-overflow" => Ok(vec![format!("depth.{}", recurse(0, [1; 256]))]),
            "many-outputs" => Ok((0..100_000).map(|n| format!("t{n}")).collect()),
            "huge-output" => Ok((0..12)
                .map(|n| format!("{n}{}", "x".repeat(1 << 20)))
                .collect()),
            "partial-then-trap" => {
                for n in 0..3 {
                    log(Level::Info, "partial work", &[("step", &n.to_string())]);
                }
                panic!("deliberate trap after partial output");
            }
            "slow" => {
                let spin_ms: u128 = config_value(&config, "spin_ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(500);
                let started = std::time::Instant::now();
                while started.elapsed().as_millis() < spin_ms {
                    black_box(());
                }
                Ok(vec!["fixtures.slow".to_string()])
            }
            "echo-size" => Ok(vec![format!("size.{}", event.object.len())]),
            "clock" => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                Ok(vec![format!("time.{now}")])
            }
            other => Err(PluginError::InvalidConfig(format!(
                "unknown mode `{other}`"
            ))),
        }
    }
}

export_router!(Misbehaving);
