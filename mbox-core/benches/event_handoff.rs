//! Event hand-off: events per second from a shard through one lane (an rtrb ring of handles
//! and a completion counter) to one NF thread running a plugin-style NF, and back to the shard's
//! free list. This is the runtime's fixed cost per event and per subscriber.
//!
//! The shard side is this thread (writing the event into its arena slot, sending, flushing,
//! retiring); the NF side is the real `NfWorker` loop calling an NF through the ABI's guarded
//! vtable object, as a loaded plugin is called. `cargo bench -p mbox-core --bench event_handoff`.

use abi_stable::sabi_trait::TD_Opaque;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mbox_abi::nf::{Guarded, NfObject_TO};
use mbox_abi::{builtin, EventHeader, FlowRef, Host, NetworkFunction, PktEvent, Verdict};
use mbox_core::config::IdleMode;
use mbox_core::controller::{NfSpec, ServiceGraph};
use mbox_core::events::arena::EventArena;
use mbox_core::events::registry::TypeRegistry;
use mbox_core::run::stack_publications;
use mbox_core::runtime::lane::{lane, LaneTx};
use mbox_core::runtime::nf_host::NfWorker;
use mbox_core::sys::park::{IdlePolicy, Waker};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An NF that reads one field of every event (so the event's cache line really moves).
struct Count(u64);

impl NetworkFunction for Count {
    fn on_event(&mut self, event: &EventHeader, _host: &mut Host<'_>) -> Verdict {
        self.0 = self.0.wrapping_add(event.ts_ns);
        Verdict::Pass
    }
}

const SLOTS: usize = 4096;

struct Harness {
    tx: LaneTx,
    arena: Arc<EventArena>,
    free: Vec<u32>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Harness {
    fn new(ring: usize, idle: IdleMode) -> Harness {
        let registry = Arc::new(TypeRegistry::with_builtins());
        let spec = NfSpec {
            name: "count".into(),
            read_only: true,
            subscribes: vec![("PKT".into(), builtin::PKT)],
            on_demand: vec![],
            publishes: vec![],
        };
        let graph = Arc::new(ServiceGraph::compile(&registry, &stack_publications(), vec![spec]).unwrap());
        let arena = Arc::new(EventArena::new(SLOTS));
        let (shard_waker, nf_waker) = (Arc::new(Waker::new()), Arc::new(Waker::new()));
        shard_waker.bind_current();
        let (tx, rx) = lane(ring, SLOTS, arena.clone(), 0, shard_waker, nf_waker.clone(), false);
        let worker = NfWorker {
            name: "count".into(),
            read_only: true,
            nf: NfObject_TO::from_value(Guarded(Count(0)), TD_Opaque),
            lanes: vec![rx],
            waker: nf_waker,
            // The bench thread and the NF thread.
            idle: IdlePolicy::new(idle == IdleMode::Spin, 2),
            publishes: vec![],
            registry,
            graph,
            plugin: "in-process".into(),
            version: "0".into(),
            live: Arc::default(),
            control: Arc::default(),
        };
        let worker = std::thread::spawn(move || {
            worker.run();
        });
        Harness { tx, arena, free: (0..SLOTS as u32).collect(), worker: Some(worker) }
    }

    fn retire(&mut self) {
        self.tx.poll_done();
        while let Some(h) = self.tx.next_retired() {
            self.free.push(h);
        }
    }

    /// Sends `n` events and waits until the NF has finished all of them.
    fn send(&mut self, n: u64) -> Duration {
        let data = [0u8; 64];
        let start = Instant::now();
        for i in 0..n {
            let h = loop {
                if let Some(h) = self.free.pop() {
                    break h;
                }
                self.tx.flush();
                self.retire();
                std::hint::spin_loop();
            };
            let ev = PktEvent::new(EventHeader::new::<PktEvent>(builtin::PKT, i, FlowRef::default()), &data);
            // SAFETY: `h` came from the free list: the NF does not hold it.
            unsafe { self.arena.write(h, &ev) };
            self.tx.send(h);
            if i % 32 == 31 {
                self.tx.flush();
                self.retire();
            }
        }
        while self.free.len() < SLOTS {
            self.tx.flush();
            self.retire();
            std::hint::spin_loop();
        }
        start.elapsed()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Dropping the lane's producer ends the NF thread.
        let (tx, _) = lane(2, 2, self.arena.clone(), 0, Arc::new(Waker::new()), Arc::new(Waker::new()), false);
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("handoff");
    group.throughput(Throughput::Elements(1));
    // `park` is the default (an idle NF thread sleeps and is woken); `spin` is the dedicated-core
    // mode, which shows the ring itself without wake-ups.
    for (idle, name) in [(IdleMode::Park, "park"), (IdleMode::Spin, "spin")] {
        for ring in [256, 1024] {
            let mut h = Harness::new(ring, idle);
            group.bench_function(format!("one_nf/{name}/ring{ring}"), |b| b.iter_custom(|iters| h.send(iters)));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
