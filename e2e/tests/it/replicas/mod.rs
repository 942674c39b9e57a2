//! Two replicas of every role on one PostgreSQL database, as real processes. Replica A and
//! replica B each run issuance, iam, ca, revocation, fleet, discovery, notification and the
//! gateway on listeners of their own, and share the database, the sealed CA keys and the KEK.
//! Agents reach the fleet listeners through a TCP front that prefers one replica and fails
//! over to the other, as behind a load balancer.
//!
//! While both run, periodic work happens once: only the holder of each lease publishes CRLs,
//! relays and sends notifications, plans fleet jobs and runs scheduled scans; each CRL scope is
//! made again once per refresh period, CRL numbers never repeat, and both PKI listeners serve
//! the same CRLs; each event reaches the webhook once; a job made through either replica's API
//! reaches the agent whose stream is on the other one. Then A, holding every lease, is killed
//! with SIGKILL while deliveries wait for their retry and an agent is in the middle of a job:
//! B takes every lease over once it expires, and nothing is lost — every event is delivered,
//! the job finishes on its first attempt, renewals and scans go on, CRL numbers keep rising.

mod checks;
mod processes;
mod state;
mod work;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use self::checks::{
    assert_crls_once_per_period, assert_delivered_once, assert_renewed_once_per_certificate,
    assert_scanned_once_per_interval, wait_all_delivered, wait_attempted, wait_delivered,
};
use self::processes::{Agent, Ports, Replica, Shared, answer_with, front, webhook_receiver};
use self::state::{Crls, db_now, fetch_crl, jobs, leases, number};
use self::work::{bind, configure, crl_path, issue, redeploy, succeeded};
use crate::support::{PgDatabase, Process, assert_eventually, scratch};

/// How long any one thing may take to happen.
const WAIT: Duration = Duration::from_secs(60);
/// Every role, in each replica.
const ROLES: &str = "issuance,iam,ca,revocation,fleet,discovery,notification,gateway";
/// The leases of the periodic work.
const LEASES: [&str; 4] = [
    "crl-publisher",
    "discovery-scheduler",
    "fleet-scheduler",
    "notification-relay",
];
/// Log messages only the holder of a lease writes (outside requests).
const LEADER_ONLY: [&str; 5] = [
    "Published a CRL.",
    "Outbox relayed.",
    "Notification delivered.",
    "Fleet jobs planned.",
    "Scan started.",
];
/// `--crl-refresh`: a CRL is due again this long after its thisUpdate (the publisher looks
/// every 1.5 s and holds its lease for 10 s).
const CRL_REFRESH_SECONDS: f64 = 3.0;
/// The scan targets' interval, the shortest the discovery role takes.
const SCAN_INTERVAL_SECONDS: f64 = 60.0;
/// Where leaves point relying parties; both PKI listeners serve the same paths.
const PKI_URL: &str = "http://pki.replicas.test";
const HOOK_SECRET: &str = "e2e-replicas-webhook-secret-0123";

/// Both replicas, the webhook receiver, the fronts and the agents, with what was set up.
struct Cluster {
    db: String,
    dir: PathBuf,
    a: Replica,
    b: Replica,
    /// Who held each lease while A ran alone.
    a_holders: BTreeMap<String, String>,
    /// The scan targets.
    targets: Vec<String>,
    /// Agent 1 (stream on B) and agent 2 (stream on A).
    agents: [String; 2],
    _helpers: Vec<Process>,
}

/// What was seen while both replicas ran.
struct BothRan {
    /// The CRLs the PKI listeners served, by number.
    served: BTreeMap<u64, Vec<u8>>,
    /// The issuing CA's CRL path on the PKI listeners.
    crl_path: String,
    /// The bindings whose certificates are renewed every few seconds.
    churn: [String; 2],
    /// CRLs published so far, per scope.
    crls: Crls,
}

/// The moment A was killed.
struct Killed {
    /// The database's clock then.
    at: f64,
    /// Deliveries being sent then (the only ones that may be sent twice).
    sending: usize,
    /// The certificates issued while deliveries failed.
    pending: Vec<String>,
    /// The binding and job an agent was running on A's stream.
    slow: (String, String),
}

impl Cluster {
    /// A alone first, so that it takes every lease; then B, the fronts and the agents.
    fn start(db: &PgDatabase, dir: &Path) -> Cluster {
        let shared = Shared::prepare(db, dir);
        let (hook, hook_port) = webhook_receiver(dir);
        let (a_ports, b_ports) = (Ports::new(), Ports::new());
        let a = Replica::start("a", a_ports, &shared);
        let targets = configure(&a.api, hook_port, &[a_ports, b_ports]);
        let a_holders = assert_eventually("replica A holds every lease", WAIT, || {
            let held = leases(&db.url);
            (held.len() == LEASES.len())
                .then_some(held.clone())
                .ok_or_else(|| format!("{held:?}"))
        });
        let b = Replica::start("b", b_ports, &shared);
        // Each front prefers one replica: agent 1's stream lands on B, agent 2's on A.
        let (front_1, port_1) = front(&[b_ports.fleet, a_ports.fleet], dir);
        let (front_2, port_2) = front(&[a_ports.fleet, b_ports.fleet], dir);
        let agent_1 = Agent::new(dir, "agent-1", port_1, &shared.tls_ca);
        let agent_2 = Agent::new(dir, "agent-2", port_2, &shared.tls_ca);
        let agents = [agent_1.enroll(&a.api), agent_2.enroll(&b.api)];
        let helpers = vec![hook, front_1, front_2, agent_1.run(dir), agent_2.run(dir)];
        assert_eventually("agent 1's stream is on B and agent 2's on A", WAIT, || {
            let on_b = b.logged_with("Agent connected.", "agent", &agents[0]);
            let on_a = a.logged_with("Agent connected.", "agent", &agents[1]);
            (on_a && on_b)
                .then_some(())
                .ok_or_else(|| format!("agent 1 on B: {on_b}, agent 2 on A: {on_a}"))
        });
        Cluster {
            db: db.url.clone(),
            dir: dir.to_path_buf(),
            a,
            b,
            a_holders,
            targets,
            agents,
            _helpers: helpers,
        }
    }

    /// Work through both APIs, checked while both replicas run.
    fn both_running(&self) -> BothRan {
        let (db, dir, a, b) = (self.db.as_str(), self.dir.as_path(), &self.a, &self.b);
        let [id_1, id_2] = &self.agents;
        // Bindings made through either API; renewals every few seconds for the 90 s ones.
        let steady_1 = bind(&a.api, dir, "steady-1", id_1, "720h", "true");
        let steady_2 = bind(&b.api, dir, "steady-2", id_2, "720h", "true");
        let churn = [
            bind(&a.api, dir, "churn-1", id_1, "90s", "true"),
            bind(&b.api, dir, "churn-2", id_2, "90s", "true"),
        ];
        for binding in [&steady_1, &steady_2] {
            succeeded(db, binding, "the first deployment", |j| j.kind == "issue");
        }
        // A job made through one replica's API reaches the agent whose stream is on the other.
        let (to_b, to_a) = (redeploy(&a.api, &steady_1), redeploy(&b.api, &steady_2));
        succeeded(db, &steady_1, "the job made on A, run over B", |j| {
            j.id == to_b
        });
        succeeded(db, &steady_2, "the job made on B, run over A", |j| {
            j.id == to_a
        });
        // Issuances through both APIs: each event reaches the webhook.
        let serials: Vec<String> = (0..6)
            .map(|i| {
                issue(
                    if i % 2 == 0 { &a.api } else { &b.api },
                    dir,
                    &format!("n{i}"),
                )
            })
            .collect();
        wait_delivered(dir, &serials);
        let crl_path = crl_path(&b.api, dir);
        let served = self.crls_served(&crl_path);
        // So far A did all the leased work and B none of it.
        assert_eq!(leases(db), self.a_holders, "no lease changed hands");
        for message in LEADER_ONLY {
            let logged = b.logged_in_background(message);
            assert_eq!(logged, Vec::<Value>::new(), "B logged {message:?}");
        }
        BothRan {
            served,
            crl_path,
            churn,
            crls: assert_crls_once_per_period(db),
        }
    }

    /// Polls both PKI listeners until they served three successive CRLs: the same bytes for
    /// a number wherever it is fetched, never an older one after a newer.
    fn crls_served(&self, path: &str) -> BTreeMap<u64, Vec<u8>> {
        let mut served: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut last_seen = [0u64; 2];
        assert_eventually("both PKI listeners serve successive CRLs", WAIT, || {
            for (i, pki) in [self.a.pki(), self.b.pki()].iter().enumerate() {
                let (n, der) = fetch_crl(pki, path, &self.dir);
                assert!(
                    n >= last_seen[i],
                    "{pki} went back from CRL {} to {n}",
                    last_seen[i]
                );
                last_seen[i] = n;
                let known = served.entry(n).or_insert_with(|| der.clone());
                assert_eq!(*known, der, "CRL {n} differs between the PKI listeners");
            }
            (served.len() >= 3)
                .then_some(())
                .ok_or_else(|| format!("CRL numbers served so far: {:?}", served.keys()))
        });
        served
    }

    /// Kills A (SIGKILL) while deliveries wait for their retry and agent 2, whose stream is on
    /// A, runs a job.
    fn kill_a_mid_work(&mut self) -> Killed {
        let (db, dir) = (self.db.clone(), self.dir.clone());
        answer_with(&dir, 503);
        let pending: Vec<String> = (0..6)
            .map(|i| issue(&self.b.api, &dir, &format!("p{i}")))
            .collect();
        wait_attempted(&db, &pending);
        let slow = bind(
            &self.b.api,
            &dir,
            "slow",
            &self.agents[1],
            "720h",
            "sleep 8",
        );
        let slow_job = assert_eventually(
            "the slow job's certificate was sent",
            WAIT,
            || match jobs(&db, &slow).first() {
                Some(j) if j.state == "issued" => Ok(j.id.clone()),
                other => Err(format!("{other:?}")),
            },
        );
        // A send in flight when its sender dies is retried once its claim lapses, two minutes
        // later; to keep the test short, A dies frozen at a moment with none in flight if one
        // comes within a few seconds (it usually does; if not, the waits below allow for it).
        let sending = || {
            let sql = "select count(*) from notification_deliveries where state = 'sending'";
            number(&db, sql) as usize
        };
        for _ in 0..50 {
            self.a.signal("STOP");
            if sending() == 0 {
                break;
            }
            self.a.signal("CONT");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.a.kill();
        let at = db_now(&db);
        let sending = sending();
        answer_with(&dir, 200);
        eprintln!(
            "replicas: A killed holding {:?}, with job {slow_job} running on its stream and \
             {sending} deliveries in flight",
            self.a_holders
        );
        Killed {
            at,
            sending,
            pending,
            slow: (slow, slow_job),
        }
    }

    /// B takes every lease over once it expired, and nothing is lost.
    fn nothing_lost(&self, before: &BothRan, killed: &Killed) {
        let (db, dir, b) = (self.db.as_str(), self.dir.as_path(), &self.b);
        // Agent 2 comes back through its front, on B; its job finishes, on its first attempt.
        let (slow, slow_job) = &killed.slow;
        let done = succeeded(db, slow, "the job A was running", |j| &j.id == slow_job);
        assert_eq!(done.attempts, 1, "resumed, not retried: {done:?}");
        assert!(b.logged_with("Agent connected.", "agent", &self.agents[1]));
        assert_eventually("B holds every lease", WAIT, || {
            let held = leases(db);
            let b_holds = held.len() == LEASES.len()
                && held
                    .values()
                    .all(|h| !self.a_holders.values().any(|a| a == h));
            b_holds.then_some(()).ok_or_else(|| format!("{held:?}"))
        });
        eprintln!(
            "replicas: B held every lease {:.1}s after the kill",
            db_now(db) - killed.at
        );
        // Every event made before the kill is delivered, the ones A was sending at most twice
        // (claims lapse after two minutes: the wait allows for it).
        wait_delivered(dir, &killed.pending);
        wait_all_delivered(db, killed.at, WAIT * 3);
        assert_delivered_once(dir, killed.sending);
        // Renewals and scans go on, once per certificate and per interval.
        for churn in &before.churn {
            succeeded(db, churn, "a renewal planned by B", |j| {
                j.kind == "renew" && j.created_at > killed.at
            });
            assert_renewed_once_per_certificate(db, churn);
        }
        assert_scanned_once_per_interval(db, &self.targets);
        self.crls_go_on(before);
    }

    /// CRLs go on from B with higher numbers, still once per period, no number twice.
    fn crls_go_on(&self, before: &BothRan) {
        let highest = *before.served.keys().last().expect("CRLs were served");
        assert_eventually("B's PKI listener serves a CRL B made", WAIT, || {
            let (n, _) = fetch_crl(&self.b.pki(), &before.crl_path, &self.dir);
            let made_by_b = !self.b.logged_in_background("Published a CRL.").is_empty();
            (n > highest && made_by_b)
                .then_some(())
                .ok_or_else(|| format!("CRL {n}, highest before the kill {highest}"))
        });
        let after = assert_crls_once_per_period(&self.db);
        for (scope, list) in &after {
            let numbers: Vec<u64> = list.iter().map(|(n, _)| *n).collect();
            eprintln!("replicas: CRLs of {scope:?}: {numbers:?}");
        }
        for (scope, list) in &before.crls {
            assert!(
                after[scope].len() > list.len(),
                "{scope:?}: no CRL after the kill"
            );
        }
        for message in [
            "Published a CRL.",
            "Fleet jobs planned.",
            "Notification delivered.",
        ] {
            let logged = self.b.logged_in_background(message);
            assert!(!logged.is_empty(), "B took over: {message:?}");
        }
    }
}

#[test]
fn two_replicas_of_every_role_do_periodic_work_once_and_lose_nothing_when_one_is_killed() {
    // Declared first, dropped last: the database outlives every process using it.
    let db = PgDatabase::create();
    let dir = scratch();
    let mut cluster = Cluster::start(&db, dir.path());
    let both = cluster.both_running();
    let killed = cluster.kill_a_mid_work();
    cluster.nothing_lost(&both, &killed);
}
