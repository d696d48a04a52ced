//! Real crashes under real load: the shop as a child process, killed with
//! SIGKILL on a schedule and started again on the same store
//! (`stampede load --kill-every`).
//!
//! [`ShopProcess`] owns the child: it starts it, waits (bounded) until it
//! answers HTTP, and on [`ShopProcess::kill_and_restart`] kills it the way
//! a power cut or the OOM killer would — no shutdown, no flush — then
//! starts it again with the same arguments on the same address. Journeys in
//! flight see their connections drop and retry with their keys.
//!
//! [`kill_loop`] runs beside the journeys and records each kill in the
//! client history as a fault, with sales at risk from the kill until
//! [`Kills::at_risk_after_ms`] after the restart: a buyer whose checkout a
//! crash interrupts is excused from the progress invariants exactly as a
//! simulated crash excuses it, while every safety invariant is still
//! judged (an acknowledged order a restart has lost is never excused).

use crate::journey::Shared;
use stampede_core::{EventKind, Millis};
use std::fmt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest a started shop may take to answer `GET /v1/products`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(20);

/// The shop, running as a child process.
pub struct ShopProcess {
    program: PathBuf,
    args: Vec<String>,
    addr: String,
    log: PathBuf,
    child: Mutex<Option<Child>>,
    http: reqwest::Client,
}

impl fmt::Debug for ShopProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShopProcess")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ShopProcess {
    /// Starts `program args…` (which must serve the shop on `addr`),
    /// appending its output to `log`, and waits until it answers.
    pub async fn start(
        program: &Path,
        args: Vec<String>,
        addr: &str,
        log: &Path,
    ) -> Result<Arc<ShopProcess>, String> {
        let shop = Arc::new(ShopProcess {
            program: program.to_path_buf(),
            args,
            addr: addr.to_string(),
            log: log.to_path_buf(),
            child: Mutex::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .map_err(|e| format!("an HTTP client: {e}"))?,
        });
        shop.spawn()?;
        shop.wait_ready().await?;
        Ok(shop)
    }

    /// Where the shop listens.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn spawn(&self) -> Result<(), String> {
        let open = |what: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .map_err(|e| format!("{what} {}: {e}", self.log.display()))
        };
        let (out, err) = (open("opening")?, open("opening")?);
        // A group of its own: Ctrl-C at the terminal stops the load, which
        // kills the shop, rather than the shop behind the load's back. A pipe
        // on its stdin, held open with the child: the shop's arguments ask it
        // to stop when the pipe closes, which it does when this process ends,
        // however it ends.
        let child = Command::new(&self.program)
            .args(&self.args)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.program.display()))?;
        *self.lock() = Some(child);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn wait_ready(&self) -> Result<(), String> {
        let url = format!("http://{}/v1/products", self.addr);
        let tries = READY_TIMEOUT.as_millis() / READY_POLL.as_millis();
        for _ in 0..tries {
            let exited = self
                .lock()
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(format!(
                    "the shop exited ({status}) before answering; its output is in {}",
                    self.log.display()
                ));
            }
            let answered = self.http.get(&url).send().await;
            if answered.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(READY_POLL).await;
        }
        Err(format!(
            "the shop did not answer {url} within {READY_TIMEOUT:?}; its output is in {}",
            self.log.display()
        ))
    }

    /// Kills the shop with SIGKILL and waits for it to be gone.
    pub fn kill(&self) {
        if let Some(mut child) = self.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the shop, starts it again, and waits until it answers.
    pub async fn kill_and_restart(&self) -> Result<(), String> {
        self.kill();
        self.spawn()?;
        self.wait_ready().await
    }
}

impl Drop for ShopProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A schedule of kills.
#[derive(Clone, Debug)]
pub struct Kills {
    /// Time between kills, from the start of the load.
    pub every: Duration,
    /// The shop to kill.
    pub shop: Arc<ShopProcess>,
    /// How long after a restart sales stay at risk (the recovery margin).
    pub at_risk_after_ms: u64,
}

/// What the kills did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KillSummary {
    /// Kills made.
    pub kills: u32,
    /// Longest time from a kill until the shop answered again, ms.
    pub longest_down_ms: u64,
}

/// Kills and restarts the shop every `kills.every` while the load lasts,
/// recording each in the client history. The last interval of the load has
/// no kill (every kill is followed by a whole interval of load on the
/// restarted shop), so a 60 s load with kills every 5 s makes ten.
pub(crate) async fn kill_loop(kills: Kills, shared: Arc<Shared>) -> Result<KillSummary, String> {
    while shared.started().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let duration = shared.config.duration;
    let mut summary = KillSummary::default();
    let mut next = kills.every;
    loop {
        let since = shared.since();
        if next + kills.every >= duration {
            return Ok(summary);
        }
        if next > since {
            tokio::time::sleep(next - since).await;
        }
        let from = Millis(shared.since().as_millis() as u64);
        let what = format!("kill -9 shop (#{})", summary.kills + 1);
        shared.record(EventKind::Fault { what: what.clone() });
        kills.shop.kill_and_restart().await?;
        let back = Millis(shared.since().as_millis() as u64);
        shared.record(EventKind::Fault {
            what: format!("restart shop after {} ms", back.0 - from.0),
        });
        shared.record(EventKind::SalesAtRisk {
            from,
            until: back.plus_ms(kills.at_risk_after_ms),
            fault: what,
            // The shop's one process is gone: every step.
            steps: stampede_core::JourneyStep::all(),
        });
        summary.kills += 1;
        summary.longest_down_ms = summary.longest_down_ms.max(back.0 - from.0);
        next += kills.every;
    }
}
