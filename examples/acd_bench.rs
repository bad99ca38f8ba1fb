//! ACD benchmark (docs/benchmarks.md, "ACD"): agents on a set of queues, every agent on a
//! call and a long line of waiting callers. Each event ends one agent's call; the core must
//! offer that agent the best waiting call. Measured: the time from the event to the offer
//! (p50/p99/max), events per second, and the core's memory. Sizes scale agents, callers
//! and queues together, to show that the work per event does not grow with queues × members.
//!
//!   cargo run --release --example acd_bench [-- EVENTS]

use std::time::{Duration, Instant};

use switchboard::acd::core::{Acd, Action, AgentDef, QueueConfig, Strategy};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn run(agents: usize, callers: usize, queues: usize, strategy: Strategy, events: usize) {
    let rss0 = rss_kib();
    let cfgs: Vec<QueueConfig> = (0..queues)
        .map(|i| {
            let mut q = QueueConfig::new(&format!("q{i}"));
            q.strategy = strategy;
            q.wrapup = Duration::ZERO;
            q
        })
        .collect();
    let mut acd = Acd::new(cfgs, true, 42);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let t0 = Instant::now();
    let mut now = t0;
    // Callers first (nobody logged in yet), then agents: each agent takes a call at once.
    let mut next_call = 0usize;
    let mut join = |acd: &mut Acd, now: Instant, rng: &mut Rng| {
        let q = format!("q{}", rng.below(queues));
        let c = format!("call-{next_call}");
        next_call += 1;
        acd.join(now, &c, &q, None, vec![]);
    };
    for _ in 0..(callers + agents) {
        join(&mut acd, now, &mut rng);
    }
    while acd.poll_action().is_some() {}
    let mut on_call: Vec<Option<String>> = vec![None; agents];
    for (i, slot) in on_call.iter_mut().enumerate() {
        let name = format!("agent-{i}");
        let qs = vec![format!("q{}", i % queues), format!("q{}", (i + 1) % queues)];
        acd.agent_update(
            now,
            AgentDef {
                name: name.clone(),
                queues: qs,
                skills: vec![("lang:en".into(), (i % 10) as i64)],
            },
            true,
        );
        while let Some(a) = acd.poll_action() {
            if let Action::Offer { call, agents, .. } = a {
                for ag in agents {
                    if acd.answered(now, &call, &ag) && ag == name {
                        *slot = Some(call.clone());
                    }
                }
            }
        }
    }
    while acd.poll_action().is_some() {}
    let busy = on_call.iter().filter(|c| c.is_some()).count();
    let rss_setup = rss_kib();

    let mut lat = Vec::with_capacity(events);
    let mut offered = 0usize;
    let started = Instant::now();
    for _ in 0..events {
        now += Duration::from_millis(10);
        let i = rng.below(agents);
        let Some(call) = on_call[i].take() else {
            continue;
        };
        // The event: the agent's call ends (wrap-up 0) → the core offers it the next call.
        let t = Instant::now();
        acd.call_ended(now, &call, "caller");
        let mut offer = None;
        while let Some(a) = acd.poll_action() {
            if let Action::Offer { call, agents, .. } = a {
                offer = Some((call, agents));
            }
        }
        lat.push(t.elapsed());
        if let Some((call, agents)) = offer {
            offered += 1;
            for ag in agents {
                if acd.answered(now, &call, &ag) {
                    let idx: usize = ag["agent-".len()..].parse().unwrap_or(0);
                    on_call[idx] = Some(call.clone());
                }
            }
            while acd.poll_action().is_some() {}
        }
        // Keep the line as long: a new caller for every one served.
        join(&mut acd, now, &mut rng);
        while let Some(a) = acd.poll_action() {
            if let Action::Offer { call, agents, .. } = a {
                for ag in agents {
                    if acd.answered(now, &call, &ag) {
                        let idx: usize = ag["agent-".len()..].parse().unwrap_or(0);
                        on_call[idx] = Some(call.clone());
                    }
                }
            }
        }
    }
    let wall = started.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let waiting: usize = acd.queues_view(now).iter().map(|q| q.waiting).sum();
    println!(
        "{:>6} agents {:>6} waiting {:>3} queues {:<12} busy {:>5}  events {:>6} offered {:>6}  p50 {:>6.1} us  p99 {:>6.1} us  max {:>7.1} us  {:>8.0} events/s  rss setup +{} KiB",
        agents,
        waiting,
        queues,
        strategy.as_str(),
        busy,
        lat.len(),
        offered,
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
        lat.len() as f64 / wall.as_secs_f64(),
        rss_setup.saturating_sub(rss0),
    );
}

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    println!("# ACD core: time from an agent's call ending to the next offer");
    for (agents, callers, queues) in [(100, 400, 2), (500, 2000, 10), (2000, 8000, 40)] {
        for strategy in [
            Strategy::LongestIdle,
            Strategy::Skills,
            Strategy::RoundRobin,
        ] {
            run(agents, callers, queues, strategy, events);
        }
    }
    // One big queue: every agent a member of the same queue.
    run(500, 2000, 1, Strategy::LongestIdle, events);
    run(500, 2000, 1, Strategy::RingAll, events / 10);
}
