//! The async face of the crate. Hashing takes tens to hundreds of
//! milliseconds of CPU, so [`PasswordHasher`] runs it on a small pool of
//! dedicated threads, never on an async worker, and a semaphore caps how
//! many hashes run at once so a burst of logins queues instead of starving
//! the server. The pool's threads run at a lower OS priority (nice +10):
//! when hashing and ordinary requests compete for the cores, the requests
//! that do not hash win, so a login storm cannot slow down `whoami`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{Semaphore, oneshot};

use crate::{HashError, HasherConfig, InternalError, SecretPassword, hash_password, verify_password};

/// What the dummy hash is made from. Its value is irrelevant: a dummy
/// verification reports `false` whatever the outcome.
const DUMMY_PASSWORD: &[u8] = b"latchkey dummy password for unknown identifiers";

type Job = Box<dyn FnOnce() + Send>;

/// Told how long each hash waited for a free slot (for the metrics).
pub type WaitObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

/// Niceness of the hashing threads: low enough that request handling
/// always gets the CPU first, not so low that hashing stalls when idle.
const HASHING_NICENESS: i32 = 10;

/// Shared, cheaply cloneable password hasher with a concurrency limit.
#[derive(Clone)]
pub struct PasswordHasher {
    config: Arc<HasherConfig>,
    permits: Arc<Semaphore>,
    slots: usize,
    jobs: SyncSender<Job>,
    dummy: Arc<OnceLock<Result<String, HashError>>>,
    /// Verifications asked for, dummy ones included (see [`Self::verifications`]).
    verifications: Arc<AtomicU64>,
    /// Hashes waiting for a permit right now (see [`Self::queued`]).
    queued: Arc<AtomicUsize>,
    wait_observer: Option<WaitObserver>,
}

/// Starts `threads` hashing threads that take jobs from one queue. They end
/// when every [`PasswordHasher`] clone (and so the sender) is gone.
fn start_pool(threads: usize) -> SyncSender<Job> {
    let (jobs, queue) = sync_channel::<Job>(threads);
    let queue = Arc::new(Mutex::new(queue));
    for n in 0..threads {
        let queue: Arc<Mutex<Receiver<Job>>> = Arc::clone(&queue);
        let spawned = std::thread::Builder::new().name(format!("latchkey-hash-{n}")).spawn(move || {
            lower_priority();
            loop {
                let job = match queue.lock() {
                    Ok(queue) => queue.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start a password hashing thread");
        }
    }
    jobs
}

/// Best effort: where the OS refuses, hashing simply keeps normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASHING_NICENESS) {
        tracing::debug!(error = %e, "could not lower the priority of a hashing thread");
    }
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("config", &self.config)
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Creates a hasher that runs at most `max_concurrent` hashes at a time.
    ///
    /// The server passes the number of CPUs
    /// (`std::thread::available_parallelism()`): each hash keeps one core
    /// busy, so more would only add latency. `0` is treated as `1`.
    pub fn new(cfg: HasherConfig, max_concurrent: usize) -> Self {
        let threads = max_concurrent.clamp(1, 1024);
        Self {
            slots: threads,
            config: Arc::new(cfg),
            permits: Arc::new(Semaphore::new(threads)),
            jobs: start_pool(threads),
            dummy: Arc::new(OnceLock::new()),
            verifications: Arc::new(AtomicU64::new(0)),
            queued: Arc::new(AtomicUsize::new(0)),
            wait_observer: None,
        }
    }

    /// Reports every hash's wait for a slot to `observer`; set it before
    /// cloning the hasher, clones made earlier do not report.
    pub fn with_wait_observer(mut self, observer: WaitObserver) -> Self {
        self.wait_observer = Some(observer);
        self
    }

    /// How many hashes are waiting for a free slot right now: the pool's
    /// queue, which grows when logins come faster than the CPUs can hash.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// How many hashes may run at once (the pool's threads).
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// How many hashes are running right now.
    pub fn running(&self) -> usize {
        self.slots.saturating_sub(self.permits.available_permits())
    }

    /// How many verifications (real or dummy) this hasher and its clones
    /// have been asked for since it was made: what a brute-force attempt
    /// costs, so tests and operators can see which attempts got this far.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The configuration new hashes are made with.
    pub fn config(&self) -> &HasherConfig {
        &self.config
    }

    /// Hashes a password with the configured algorithm (see
    /// [`hash_password`]).
    #[tracing::instrument(name = "password.hash", level = "debug", skip_all)]
    pub async fn hash(&self, password: SecretPassword) -> Result<String, HashError> {
        let cfg = Arc::clone(&self.config);
        self.run(move || hash_password(password.as_bytes(), &cfg)).await?
    }

    /// Verifies a password against a stored hash (see [`verify_password`]).
    #[tracing::instrument(name = "password.verify", level = "debug", skip_all)]
    pub async fn verify(&self, password: SecretPassword, encoded: String) -> Result<bool, HashError> {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        self.run(move || verify_password(password.as_bytes(), &encoded)).await?
    }

    /// Like [`verify`](Self::verify), but when there is no stored hash
    /// (unknown identifier, or an identity without a password) it spends the
    /// same work on a dummy hash of the configured algorithm and returns
    /// `Ok(false)`, so response times do not reveal which identifiers exist.
    ///
    /// The dummy is made on first use and reused afterwards. For parity with
    /// a real bcrypt hash, an over-long password still yields
    /// [`HashError::PasswordTooLong`].
    #[tracing::instrument(name = "password.verify_or_dummy", level = "debug", skip_all)]
    pub async fn verify_or_dummy(
        &self,
        password: SecretPassword,
        encoded: Option<String>,
    ) -> Result<bool, HashError> {
        if let Some(encoded) = encoded {
            return self.verify(password, encoded).await;
        }
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let cfg = Arc::clone(&self.config);
        let dummy = Arc::clone(&self.dummy);
        self.run(move || {
            let encoded = dummy.get_or_init(|| hash_password(DUMMY_PASSWORD, &cfg)).clone()?;
            match verify_password(password.as_bytes(), &encoded) {
                Err(HashError::PasswordTooLong) => Err(HashError::PasswordTooLong),
                _ => Ok(false),
            }
        })
        .await?
    }

    /// Makes the dummy hash [`verify_or_dummy`](Self::verify_or_dummy) uses
    /// now, so the first unknown identifier neither waits for it nor stands
    /// out by that wait. A start-up step; an error (a configuration the
    /// hasher refuses) shows again on first use.
    pub async fn prepare_dummy(&self) -> Result<(), HashError> {
        let cfg = Arc::clone(&self.config);
        let dummy = Arc::clone(&self.dummy);
        self.run(move || dummy.get_or_init(|| hash_password(DUMMY_PASSWORD, &cfg)).clone().map(drop)).await?
    }

    /// Runs CPU-bound `work` on the hashing pool once a permit is free.
    ///
    /// The permit moves into the job, so it stays taken until the work
    /// finishes even if the caller's future is dropped halfway: a client
    /// disconnecting cannot be used to exceed the limit. Holding a permit
    /// also means the queue always has room, so sending never blocks.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let waiting = Queued::enter(&self.queued);
        let permit = Arc::clone(&self.permits).acquire_owned().await;
        let waited = waiting.leave();
        let permit = permit.map_err(|_| InternalError::Closed)?;
        if let Some(observe) = &self.wait_observer {
            observe(waited);
        }
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            // Free the slot before answering, so a caller that sees the
            // result also sees the permit returned.
            drop(permit);
            let _ = done.send(outcome.ok());
        });
        self.jobs.send(job).map_err(|_| InternalError::PoolGone)?;
        match result.await {
            Ok(Some(value)) => Ok(value),
            _ => {
                tracing::error!("password hashing task failed");
                Err(InternalError::TaskFailed.into())
            }
        }
    }
}

/// One hash counted in the queue until it gets a slot, also when its
/// caller gives up while waiting (the future is dropped).
struct Queued<'a> {
    count: &'a AtomicUsize,
    since: std::time::Instant,
}

impl<'a> Queued<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self { count, since: std::time::Instant::now() }
    }

    /// Leaves the queue; returns how long it waited.
    fn leave(self) -> std::time::Duration {
        self.since.elapsed()
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_argon2() -> HasherConfig {
        HasherConfig::Argon2 {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            salt_length: 16,
            key_length: 32,
        }
    }

    #[tokio::test]
    async fn hash_then_verify() {
        for cfg in [fast_argon2(), HasherConfig::Bcrypt { cost: 4 }] {
            let hasher = PasswordHasher::new(cfg.clone(), 2);
            assert_eq!(hasher.config(), &cfg);
            let h = hasher.hash("s3cret pass".into()).await.unwrap();
            assert!(hasher.verify("s3cret pass".into(), h.clone()).await.unwrap());
            assert!(!hasher.verify("other".into(), h.clone()).await.unwrap());
            assert!(hasher.verify_or_dummy("s3cret pass".into(), Some(h)).await.unwrap());
            // Hashing a new password is not a verification; clones share the count.
            assert_eq!(hasher.clone().verifications(), 3);
        }
    }

    #[tokio::test]
    async fn verify_or_dummy_without_hash_is_false() {
        for cfg in [fast_argon2(), HasherConfig::Bcrypt { cost: 4 }] {
            let hasher = PasswordHasher::new(cfg, 1);
            // Not even the dummy's own password may get through.
            for pw in ["anything", "latchkey dummy password for unknown identifiers"] {
                assert!(!hasher.verify_or_dummy(pw.into(), None).await.unwrap());
            }
            // Made once, then reused, also when prepared ahead.
            let first = hasher.dummy.get().cloned().unwrap().unwrap();
            hasher.prepare_dummy().await.unwrap();
            hasher.verify_or_dummy("again".into(), None).await.unwrap();
            assert_eq!(hasher.dummy.get().cloned().unwrap().unwrap(), first);
            // Dummy verifications count like real ones.
            assert_eq!(hasher.verifications(), 3);
        }
    }

    #[tokio::test]
    async fn verify_or_dummy_keeps_bcrypt_length_error() {
        let hasher = PasswordHasher::new(HasherConfig::Bcrypt { cost: 4 }, 1);
        let long = SecretPassword::new("x".repeat(73));
        assert!(matches!(hasher.verify_or_dummy(long, None).await, Err(HashError::PasswordTooLong)));
    }

    #[tokio::test]
    async fn errors_pass_through() {
        let hasher = PasswordHasher::new(fast_argon2(), 1);
        assert!(matches!(hasher.verify("pw".into(), "$md5$abc".into()).await, Err(HashError::UnknownFormat)));
        let broken = PasswordHasher::new(HasherConfig::Bcrypt { cost: 99 }, 1);
        assert!(matches!(broken.hash("pw".into()).await, Err(HashError::Internal(_))));
        assert!(matches!(broken.verify_or_dummy("pw".into(), None).await, Err(HashError::Internal(_))));
        assert!(matches!(broken.prepare_dummy().await, Err(HashError::Internal(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_verifications_share_one_permit() {
        let hasher = PasswordHasher::new(HasherConfig::Bcrypt { cost: 4 }, 1);
        let h = hasher.hash("pw".into()).await.unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let hasher = hasher.clone();
                let h = h.clone();
                tokio::spawn(async move {
                    let pw = if i % 2 == 0 { "pw" } else { "nope" };
                    (i, hasher.verify(pw.into(), h).await.unwrap())
                })
            })
            .collect();
        for task in tasks {
            let (i, ok) = task.await.unwrap();
            assert_eq!(ok, i % 2 == 0);
        }
        assert_eq!(hasher.permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn work_waits_for_a_permit() {
        let hasher = PasswordHasher::new(HasherConfig::Bcrypt { cost: 4 }, 1);
        let held = Arc::clone(&hasher.permits).acquire_owned().await.unwrap();

        let waiting = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.hash("pw".into()).await }
        });
        // While the only permit is held the task cannot finish, however long
        // we let it run.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        assert_eq!(hasher.queued(), 1, "the waiting hash is in the queue");
        assert_eq!(hasher.running(), 1);

        drop(held);
        let h = waiting.await.unwrap().unwrap();
        assert_eq!(hasher.queued(), 0);
        assert!(hasher.verify("pw".into(), h).await.unwrap());
    }

    #[tokio::test]
    async fn every_hash_reports_its_wait() {
        let waits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&waits);
        let hasher = PasswordHasher::new(HasherConfig::Bcrypt { cost: 4 }, 1).with_wait_observer(Arc::new(
            move |_| {
                seen.fetch_add(1, Ordering::Relaxed);
            },
        ));
        let h = hasher.hash("pw".into()).await.unwrap();
        hasher.clone().verify("pw".into(), h).await.unwrap();
        assert_eq!(waits.load(Ordering::Relaxed), 2);
        assert_eq!((hasher.queued(), hasher.running(), hasher.slots()), (0, 0, 1));
    }

    #[test]
    fn zero_permits_means_one() {
        let hasher = PasswordHasher::new(fast_argon2(), 0);
        assert_eq!(hasher.permits.available_permits(), 1);
        assert!(format!("{hasher:?}").contains("available_permits: 1"));
    }
}
