//! What a shard serves: one slab with an [`Entry`] per accepted
//! connection, keyed by the tag the engine returns with every event of the
//! connection (and the owner of its backend socket in the io_uring); one
//! timer wheel with each entry's next deadline, keyed the same way; and
//! each listener's count of open connections. Events, completions and
//! deadlines reach what serves a connection by index, never by lookup,
//! and nothing is scanned.

use super::entries::Entries;

use super::plan::{ListenerLease, ListenerPlan, Serve, ShardUpdate};
use super::service::Local;
use super::ListenerStats;
use crate::proxy::{ClientEvent, Proxy, Session, Step};
use crate::tcp::timer_wheel::TimerWheel;
use crate::tcp::{ConnId, Event, Instant, ListenerId, Refuse, Stack, Tag};
use crate::upstream::uring::Completion;

/// What serves one connection.
#[derive(Debug)]
pub enum Serving {
    /// In-process: echo, discard or source.
    Local(Local),
    /// A proxy session.
    Proxy(Session),
}

/// One entry of the slab.
#[derive(Debug)]
pub struct Entry {
    /// The listener that accepted it (its open-connection count).
    listener: usize,
    /// Counted against the listener's process-wide limit until dropped.
    _lease: ListenerLease,
    serving: Serving,
}

impl Entry {
    fn client(&self) -> ConnId {
        match &self.serving {
            Serving::Local(local) => local.id,
            Serving::Proxy(session) => session.client,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.serving {
            Serving::Local(local) => Some(local.idle_check),
            Serving::Proxy(session) => session.deadline(),
        }
    }
}

/// A listener and its connections open on this shard. Kept after a
/// reload removes it (closed) while connections it accepted remain.
#[derive(Debug)]
pub(super) struct ListenerState {
    pub id: ListenerId,
    pub plan: ListenerPlan,
    /// Open on this shard (the listener's limit counts every shard's).
    open: u32,
    /// Connections reset at the listener's limit, on this shard.
    over_limit: u64,
    /// Removed by a reload: closed for good (until a listener on the same
    /// address comes back).
    removed: bool,
}

/// What one input does to an entry: the input and what it may use.
struct Io<'a> {
    stack: &'a mut Stack,
    proxy: Option<&'a mut Proxy>,
    scratch: &'a mut [u8],
    now: Instant,
}

/// Everything the shard serves (see the module docs).
pub(super) struct Served {
    entries: Entries<Entry>,
    deadlines: TimerWheel,
    expired: Vec<u32>,
    /// Reused for the keys woken by a source port's line.
    woken: Vec<u64>,
    /// By [`ListenerId::index`].
    listeners: Vec<ListenerState>,
    pub proxy: Option<Proxy>,
    completions: Vec<Completion>,
    scratch: Box<[u8]>,
    /// Draining: listeners stay closed, reloads add none.
    draining: bool,
    drain_refuse: Refuse,
    /// The config generation of the last update taken.
    generation: u64,
}

impl Served {
    pub fn new(drain_refuse: Refuse) -> Self {
        Self {
            entries: Entries::default(),
            deadlines: TimerWheel::default(),
            expired: Vec::new(),
            woken: Vec::new(),
            listeners: Vec::new(),
            proxy: None,
            completions: Vec::with_capacity(256),
            scratch: vec![0u8; 64 * 1024].into_boxed_slice(),
            draining: false,
            drain_refuse,
            generation: 0,
        }
    }

    /// The config generation of the last update taken.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Takes `update` (at start, and at each reload): the backend leg's
    /// pools first, then the listeners by name — a known one takes its new
    /// settings (for new connections), one whose address changed or a new
    /// one opens, a missing one closes (RST to new attempts; what it
    /// accepted goes on) — then the engine's parameters.
    pub fn apply(&mut self, stack: &mut Stack, update: ShardUpdate) -> std::io::Result<()> {
        self.generation = update.generation;
        self.drain_refuse = update.drain_refuse;
        match (&mut self.proxy, &update.upstream) {
            (Some(proxy), Some(plan)) => proxy.reconfigure(plan),
            (None, Some(plan)) => self.proxy = Some(Proxy::new(plan)?),
            (_, None) => {}
        }
        for state in self.listeners.iter_mut().filter(|l| !l.removed) {
            let kept = update
                .listeners
                .iter()
                .any(|p| p.name == state.plan.name && p.addr == state.plan.addr);
            if !kept {
                stack.close_listener(state.id, Refuse::Reset);
                state.removed = true;
            }
        }
        for plan in update.listeners {
            let known = self
                .listeners
                .iter_mut()
                .find(|l| !l.removed && l.plan.name == plan.name);
            if let Some(state) = known {
                state.plan = plan;
                continue;
            }
            let addr = plan.addr;
            let id = stack
                .listen(addr)
                .map_err(|e| std::io::Error::other(format!("listener {addr}: {e}")))?;
            if self.draining {
                stack.close_listener(id, self.drain_refuse);
            }
            match self.listeners.get_mut(id.index()) {
                // The same address again: its earlier connections still
                // count against it.
                Some(state) => {
                    state.plan = plan;
                    state.removed = false;
                }
                None => self.listeners.push(ListenerState {
                    id,
                    plan,
                    open: 0,
                    over_limit: 0,
                    removed: false,
                }),
            }
        }
        stack.set_config(update.tcp);
        stack.set_max_connections(update.max_connections);
        Ok(())
    }

    /// Closes every listener (new attempts get the configured refusal);
    /// what is served goes on.
    pub fn drain(&mut self, stack: &mut Stack) {
        self.draining = true;
        for state in &self.listeners {
            stack.close_listener(state.id, self.drain_refuse);
        }
    }

    /// Ends everything still served (a drain ran out of time): FIN to
    /// every client (and every backend); returns how many there were.
    pub fn finish(&mut self, stack: &mut Stack, now: Instant) -> u64 {
        let keys = self.entries.keys();
        for &key in &keys {
            self.dispatch(stack, now, key, None, |serving, io| {
                match (serving, io.proxy) {
                    (Serving::Local(local), _) => {
                        let _ = io.stack.close(io.now, local.id);
                        Step::Finished
                    }
                    (Serving::Proxy(s), Some(proxy)) => proxy.finish(io.stack, io.now, s),
                    (Serving::Proxy(_), None) => Step::Finished,
                }
            });
        }
        keys.len() as u64
    }

    /// Each listener's counters.
    pub fn listener_stats(&self, stack: &Stack) -> Vec<ListenerStats> {
        self.listeners
            .iter()
            .map(|l| ListenerStats {
                name: l.plan.name.clone(),
                addr: l.plan.addr,
                listening: stack.is_listening(l.id),
                open: l.open,
                over_limit: l.over_limit,
                syn_queue: stack.syn_queue_len(l.id),
                accept_queue: stack.accept_queue_len(l.id),
            })
            .collect()
    }

    /// Connections served now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Deadlines armed now.
    pub fn deadlines(&self) -> usize {
        self.deadlines.len()
    }

    /// The earliest deadline before `limit`, if any.
    pub fn next_deadline_before(&self, limit: Instant) -> Option<Instant> {
        self.deadlines.next_deadline_before(limit)
    }

    /// The io_uring's completions, each to the session that owns the
    /// socket; returns how many came.
    pub fn completions(&mut self, stack: &mut Stack, now: Instant) -> usize {
        let Some(proxy) = self.proxy.as_mut() else {
            return 0;
        };
        let mut batch = std::mem::take(&mut self.completions);
        proxy.poll_completions(&mut batch);
        for completion in &batch {
            self.dispatch(
                stack,
                now,
                completion.owner as usize,
                None,
                |serving, io| match (serving, io.proxy) {
                    (Serving::Proxy(s), Some(proxy)) => {
                        proxy.on_backend(io.stack, io.now, s, completion)
                    }
                    _ => Step::Continue,
                },
            );
        }
        let count = batch.len();
        self.completions = batch;
        count
    }

    /// The deadlines that came due.
    pub fn expire(&mut self, stack: &mut Stack, now: Instant) {
        let mut expired = std::mem::take(&mut self.expired);
        self.deadlines.expire(now, &mut expired);
        for key in expired.drain(..) {
            self.dispatch(stack, now, key as usize, None, |serving, io| {
                match (serving, io.proxy) {
                    (Serving::Local(local), _) => local.on_timeout(io.stack, io.now),
                    (Serving::Proxy(s), Some(proxy)) => proxy.on_timeout(io.stack, io.now, s),
                    (Serving::Proxy(_), None) => Step::Finished,
                }
            });
        }
        self.expired = expired;
    }

    /// Sessions whose turn for a source port came try for one (one
    /// leaving the line wakes the next: repeated until none is woken).
    pub fn wake(&mut self, stack: &mut Stack, now: Instant) {
        let mut woken = std::mem::take(&mut self.woken);
        loop {
            if let Some(proxy) = self.proxy.as_mut() {
                proxy.take_woken(&mut woken);
            }
            if woken.is_empty() {
                break;
            }
            for key in woken.drain(..) {
                self.dispatch(stack, now, key as usize, None, |serving, io| {
                    match (serving, io.proxy) {
                        (Serving::Proxy(s), Some(proxy)) => proxy.on_port_turn(io.stack, io.now, s),
                        _ => Step::Continue,
                    }
                });
            }
        }
        self.woken = woken;
    }

    /// The engine's events, each to what serves the connection.
    pub fn events(&mut self, stack: &mut Stack, now: Instant) {
        while let Some(event) = stack.poll_event() {
            let (id, tag) = match event {
                Event::Acceptable(listener) => {
                    self.accept_all(stack, now, listener);
                    continue;
                }
                other => other.conn().expect("a connection event"),
            };
            // A slab key is reused as soon as its entry goes: the event may
            // be for the connection that had it before.
            self.dispatch(stack, now, tag.0 as usize, Some(id), |serving, io| {
                match (serving, io.proxy) {
                    (Serving::Local(local), _) => match event {
                        Event::Closed(..) => {
                            let _ = io.stack.close(io.now, id);
                            Step::Finished
                        }
                        Event::Reset(..) => Step::Finished,
                        _ => local.pump(io.stack, io.now, io.scratch),
                    },
                    (Serving::Proxy(s), Some(proxy)) => {
                        let what = match event {
                            Event::Closed(..) => ClientEvent::Closed,
                            Event::Reset(..) => ClientEvent::Reset,
                            _ => ClientEvent::Ready,
                        };
                        proxy.on_client(io.stack, io.now, s, what)
                    }
                    (Serving::Proxy(_), None) => Step::Finished,
                }
            });
        }
    }

    /// Runs `input` on what serves entry `key` (if there, and serving `id`
    /// when given), then drops the entry when finished (its deadline and
    /// its listener's count with it) or keeps its deadline current.
    fn dispatch(
        &mut self,
        stack: &mut Stack,
        now: Instant,
        key: usize,
        id: Option<ConnId>,
        input: impl FnOnce(&mut Serving, Io<'_>) -> Step,
    ) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if id.is_some_and(|id| entry.client() != id) {
            return;
        }
        let io = Io {
            stack,
            proxy: self.proxy.as_mut(),
            scratch: &mut self.scratch,
            now,
        };
        match input(&mut entry.serving, io) {
            Step::Finished => {
                let entry = self.entries.remove(key);
                self.listeners[entry.listener].open -= 1;
                self.deadlines.remove(key as u32);
            }
            Step::Continue => {
                let at = entry.deadline();
                if self.deadlines.deadline(key as u32) != at {
                    arm(&mut self.deadlines, key, at);
                }
            }
        }
    }

    /// Takes every connection waiting on `listener` and starts serving it.
    fn accept_all(&mut self, stack: &mut Stack, now: Instant, listener: ListenerId) {
        let index = listener.index();
        let Some(plan) = self.listeners.get(index).map(|l| l.plan.clone()) else {
            return;
        };
        loop {
            let key = self.entries.vacant_key();
            let Some(id) = stack.accept(listener, Tag(key as u64)) else {
                return;
            };
            let Some(lease) = plan.open.lease(plan.max_connections) else {
                // At the listener's limit (over every shard): a clean reset.
                self.listeners[index].over_limit += 1;
                if let (Serve::Proxy(_), Some(proxy)) = (plan.serve, self.proxy.as_mut()) {
                    proxy.over_limit();
                }
                let _ = stack.abort(now, id);
                continue;
            };
            let serving = match plan.serve {
                Serve::Proxy(policy) => match self.proxy.as_mut() {
                    Some(proxy) => proxy
                        .open(stack, now, key as u64, id, policy)
                        .map(Serving::Proxy),
                    None => None,
                },
                local => {
                    let kind = local.local_kind().expect("not a proxy listener");
                    let mut local = Local::new(id, kind, plan.idle_timeout, now);
                    match local.pump(stack, now, &mut self.scratch) {
                        Step::Continue => Some(Serving::Local(local)),
                        Step::Finished => continue,
                    }
                }
            };
            let Some(serving) = serving else {
                // No backend leg, or already over (no backend could take
                // it): a clean reset.
                let _ = stack.abort(now, id);
                continue;
            };
            self.listeners[index].open += 1;
            let entry = self.entries.insert(
                key,
                Entry {
                    listener: index,
                    _lease: lease,
                    serving,
                },
            );
            let deadline = entry.deadline();
            arm(&mut self.deadlines, key, deadline);
        }
    }

    /// Cuts off the free tails of the slabs (served entries, their
    /// deadlines, backend sockets) and gives back what they no longer
    /// need: called every 100 ms, not per connection.
    pub fn release_memory(&mut self) {
        self.entries.release_memory();
        self.deadlines.truncate(self.entries.held());
        if let Some(proxy) = self.proxy.as_mut() {
            proxy.release_memory();
        }
    }

    /// Shutdown: resets every proxied client and backend socket, and waits
    /// (bounded) for the io_uring to give back what it holds.
    pub fn shutdown(&mut self, stack: &mut Stack, now: Instant) {
        if let Some(proxy) = self.proxy.as_mut() {
            let sessions = self
                .entries
                .values_mut()
                .filter_map(|e| match &mut e.serving {
                    Serving::Proxy(session) => Some(session),
                    Serving::Local(_) => None,
                });
            proxy.shutdown(stack, now, sessions);
        }
    }
}

/// Arms (or cancels) the deadline of entry `key`.
fn arm(deadlines: &mut TimerWheel, key: usize, at: Option<Instant>) {
    match at {
        Some(at) => deadlines.insert(key as u32, at),
        None => deadlines.remove(key as u32),
    }
}
