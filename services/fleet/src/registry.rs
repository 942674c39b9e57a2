//! The agent streams open on this replica: who is connected, how to reach them, and who sent
//! a heartbeat since the last flush (heartbeats are written to the store in batches).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use certmesh_proto::fleet::ServerMessage;
use certmesh_store::TenantId;
use tokio::sync::mpsc;
use tonic::Status;

use crate::model::AgentIdentity;

/// Where a session's server messages go.
pub type Outbox = mpsc::Sender<Result<ServerMessage, Status>>;

#[derive(Debug)]
struct Entry {
    tenant: TenantId,
    conn: u64,
    tx: Outbox,
    seen: bool,
}

/// The open streams, by agent.
#[derive(Debug, Default)]
pub struct Registry {
    streams: Mutex<HashMap<uuid::Uuid, Entry>>,
    next: AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<uuid::Uuid, Entry>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `who`'s new stream, replacing an older one of the same agent (whose messages
    /// then go nowhere); returns the stream's number for [`Registry::unregister`].
    pub fn register(&self, who: AgentIdentity, tx: Outbox) -> u64 {
        let conn = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            who.agent,
            Entry {
                tenant: who.tenant,
                conn,
                tx,
                seen: true,
            },
        );
        conn
    }

    /// Forgets stream `conn` of `agent`, unless a newer stream replaced it.
    pub fn unregister(&self, agent: uuid::Uuid, conn: u64) {
        let mut streams = self.lock();
        if streams.get(&agent).is_some_and(|e| e.conn == conn) {
            streams.remove(&agent);
        }
    }

    /// Drops `agent`'s stream (it was retired), returning where to send the last word.
    pub fn remove(&self, agent: uuid::Uuid) -> Option<Outbox> {
        self.lock().remove(&agent).map(|e| e.tx)
    }

    /// How to reach `agent`, if its stream is open here.
    pub fn sender(&self, agent: uuid::Uuid) -> Option<Outbox> {
        self.lock().get(&agent).map(|e| e.tx.clone())
    }

    /// Notes a heartbeat from `agent`.
    pub fn touch(&self, agent: uuid::Uuid) {
        if let Some(e) = self.lock().get_mut(&agent) {
            e.seen = true;
        }
    }

    /// The agents heard from since the last call, by tenant; resets the marks.
    pub fn take_seen(&self) -> HashMap<TenantId, Vec<uuid::Uuid>> {
        let mut out: HashMap<TenantId, Vec<uuid::Uuid>> = HashMap::new();
        for (agent, e) in self.lock().iter_mut() {
            if std::mem::take(&mut e.seen) {
                out.entry(e.tenant).or_default().push(*agent);
            }
        }
        out
    }

    /// Every connected agent, by tenant.
    pub fn connected(&self) -> HashMap<TenantId, Vec<uuid::Uuid>> {
        let mut out: HashMap<TenantId, Vec<uuid::Uuid>> = HashMap::new();
        for (agent, e) in self.lock().iter() {
            out.entry(e.tenant).or_default().push(*agent);
        }
        out
    }

    /// Whether `agent`'s stream is open here.
    pub fn is_connected(&self, agent: uuid::Uuid) -> bool {
        self.lock().contains_key(&agent)
    }

    /// Open streams.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No open streams.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_stream_replaces_an_older_one_and_outlives_its_unregister() {
        let r = Registry::default();
        let who = AgentIdentity {
            tenant: TenantId(uuid::Uuid::from_u128(1)),
            agent: uuid::Uuid::from_u128(2),
        };
        let (tx, _rx) = mpsc::channel(1);
        let old = r.register(who, tx.clone());
        let new = r.register(who, tx);
        r.unregister(who.agent, old);
        assert!(r.is_connected(who.agent));
        assert_eq!(r.take_seen().get(&who.tenant).map(Vec::len), Some(1));
        assert!(r.take_seen().is_empty(), "marks reset");
        r.touch(who.agent);
        assert_eq!(r.take_seen().len(), 1);
        r.unregister(who.agent, new);
        assert!(r.is_empty());
    }
}
