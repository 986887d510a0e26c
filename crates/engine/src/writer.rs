//! Layer blobs compressed on a second thread while the build goes on.
//!
//! A RUN step's layer is written twice: as a snapshot the next RUN mounts
//! (made at once, see [`hoist_run::snapshot::adopt`]), and as the gzip
//! blob the image names. Only the snapshot is needed to go on, so the blob
//! is a job for the build's writer thread: the next steps run while it
//! compresses, and whatever needs the blob (the manifest, a snapshot that
//! could not be adopted) waits for it through [`LayerBlob::descriptor`].
//!
//! Jobs run one at a time, in order (each compresses on all cores itself).
//! A job's cache record is written by the job, after its blob: a build
//! killed before the job ends leaves no record naming a missing blob.
//! Dropping the writer stops the job under way at its next write (an
//! interrupted build must exit at once) and runs none of those queued.

use crate::error::{BuildError, StepError, StepPlace};
use hoist_oci::image::Descriptor;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

/// The writer thread's nice value where it cannot be made idle (0 is the
/// build's own, 19 the lowest).
const NICENESS: libc::c_int = 10;

/// Puts the calling thread (the writer) below the steps: a RUN's commands
/// come first, and compression takes the cores they leave idle. The
/// threads compressing each blob start from it and inherit this. Root on
/// the host makes it SCHED_IDLE, which any waking step preempts at once,
/// and which [`stop_yielding`] can undo when the build waits for the
/// writer; elsewhere raising a priority back needs a privilege the process
/// has not, so it takes nice 10, low but never starved by other
/// processes.
fn yield_to_the_steps() {
    // SAFETY: geteuid has no preconditions.
    let host_root = unsafe { libc::geteuid() } == 0
        && hoist_run::userns::current() == hoist_run::userns::Namespace::Host;
    // SAFETY: scheduling calls on this thread with valid arguments;
    // failing leaves it as it was.
    unsafe {
        if host_root {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        } else {
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICENESS);
        }
    }
}

/// Puts the process's SCHED_IDLE threads (the writer's) back to the
/// normal policy: the build now waits for them.
fn stop_yielding() {
    let param = libc::sched_param { sched_priority: 0 };
    for tid in idle_threads() {
        // SAFETY: a thread of this process; one that has exited meanwhile
        // makes the call fail, which changes nothing.
        unsafe { libc::sched_setscheduler(tid, libc::SCHED_OTHER, &param) };
    }
}

/// The threads of this process under SCHED_IDLE.
fn idle_threads() -> Vec<libc::pid_t> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        // SAFETY: sched_getscheduler on a thread of this process (one that
        // has exited meanwhile gives -1).
        .filter(|&tid| unsafe { libc::sched_getscheduler(tid) } == libc::SCHED_IDLE)
        .collect()
}

/// What a job made.
#[derive(Debug, Clone)]
pub(super) struct Written {
    pub descriptor: Descriptor,
    /// Compressed blocks copied from an earlier build's layer.
    pub reused: usize,
    /// A damaged blob found on the way (see [`crate::commit::Blob`]).
    pub damaged: Option<(hoist_oci::Digest, bool)>,
}

/// Writes one blob; stops with an error when the flag it is given is set.
pub(super) type Job<'s> = Box<dyn FnOnce(&AtomicBool) -> Result<Written, StepError> + Send + 's>;

/// A layer's blob: written, or being written by the writer thread.
#[derive(Debug, Clone)]
pub(super) enum LayerBlob {
    Ready(Box<Descriptor>),
    Pending(Arc<Pending>),
}

impl LayerBlob {
    pub fn ready(descriptor: Descriptor) -> LayerBlob {
        LayerBlob::Ready(Box::new(descriptor))
    }

    /// The blob's descriptor, waiting for its job if need be. A job that
    /// failed fails every wait on it, with the step's location.
    pub fn descriptor(&self) -> Result<Descriptor, BuildError> {
        match self {
            LayerBlob::Ready(descriptor) => Ok((**descriptor).clone()),
            LayerBlob::Pending(pending) => pending.wait(),
        }
    }
}

/// A job's result, once there.
#[derive(Debug)]
pub(super) struct Pending {
    /// A failure is shared by every wait on the blob.
    result: Mutex<Option<Result<Written, Arc<StepError>>>>,
    done: Condvar,
    /// The step, for the error of a failed job.
    place: StepPlace,
}

impl Pending {
    fn finish(&self, result: Result<Written, Arc<StepError>>) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        self.done.notify_all();
    }

    fn wait(&self) -> Result<Descriptor, BuildError> {
        let mut result = self.result.lock().unwrap_or_else(|e| e.into_inner());
        if result.is_none() {
            stop_yielding();
        }
        loop {
            match &*result {
                Some(Ok(written)) => return Ok(written.descriptor.clone()),
                Some(Err(e)) => return Err(failure(&self.place, e)),
                None => result = self.done.wait(result).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// The error of a step whose layer job failed with `e`.
fn failure(place: &StepPlace, e: &Arc<StepError>) -> BuildError {
    place.error(StepError::Written { source: e.clone() })
}

/// The build's writer thread.
pub(super) struct LayerWriter<'s> {
    jobs: Option<mpsc::Sender<(Job<'s>, Arc<Pending>)>>,
    thread: Option<ScopedJoinHandle<'s, Totals>>,
    stop: Arc<AtomicBool>,
}

/// What the jobs did, in all.
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub reused: usize,
    /// Damaged blobs the jobs found (see [`crate::commit::Blob`]).
    pub damaged: Vec<(hoist_oci::Digest, bool)>,
    /// The first failure, as [`LayerBlob::descriptor`] reports it.
    pub failed: Option<BuildError>,
}

impl<'s> LayerWriter<'s> {
    pub fn start<'e>(scope: &'s Scope<'s, 'e>) -> LayerWriter<'s> {
        let (tx, rx) = mpsc::channel::<(Job<'s>, Arc<Pending>)>();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = scope.spawn(move || {
            yield_to_the_steps();
            let mut totals = Totals::default();
            for (job, pending) in rx {
                let result = if flag.load(Ordering::SeqCst) {
                    Err(StepError::invalid("the build stopped first", None))
                } else {
                    // A job that panics fails its blob, not every wait on it.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&flag)))
                        .unwrap_or_else(|_| {
                            Err(StepError::invalid("the layer writer panicked", None))
                        })
                }
                .map_err(Arc::new);
                match &result {
                    Ok(written) => {
                        totals.reused += written.reused;
                        totals.damaged.extend(written.damaged);
                    }
                    Err(e) if totals.failed.is_none() => {
                        totals.failed = Some(failure(&pending.place, e));
                    }
                    Err(_) => {}
                }
                pending.finish(result);
            }
            totals
        });
        LayerWriter {
            jobs: Some(tx),
            thread: Some(thread),
            stop,
        }
    }

    /// Queues `job`; its blob is the returned one.
    pub fn submit(&self, place: StepPlace, job: Job<'s>) -> LayerBlob {
        let pending = Arc::new(Pending {
            result: Mutex::new(None),
            done: Condvar::new(),
            place,
        });
        let queued = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send((job, pending.clone())).is_ok());
        if !queued {
            pending.finish(Err(Arc::new(StepError::invalid(
                "the layer writer has stopped",
                None,
            ))));
        }
        LayerBlob::Pending(pending)
    }

    /// Waits for every queued job; returns what they did. Later calls
    /// find nothing left to do, and a job submitted after fails.
    pub fn finish(&mut self) -> Totals {
        if self.thread.is_some() {
            stop_yielding();
        }
        drop(self.jobs.take());
        match self.thread.take().map(ScopedJoinHandle::join) {
            Some(Ok(totals)) => totals,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Totals::default(),
        }
    }
}

impl Drop for LayerWriter<'_> {
    /// A build that did not reach [`LayerWriter::finish`] failed or was
    /// interrupted: the job under way stops at its next write.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.store(true, Ordering::SeqCst);
            self.finish();
        }
    }
}

/// A writer that fails once `stop` is set: a job's blob stops growing as
/// soon as the build is abandoned.
pub(super) struct Stoppable<'f, W> {
    pub inner: W,
    pub stop: &'f AtomicBool,
}

impl<W: Write> Write for Stoppable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            // Not `Interrupted`, which `write_all` and `io::copy` retry.
            return Err(io::Error::other("the build stopped"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_oci::digest::Digest;
    use hoist_oci::media_type;

    fn written(n: u8) -> Written {
        Written {
            descriptor: Descriptor::new(media_type::OCI_LAYER_TAR_GZIP, Digest::of(&[n]), n.into()),
            reused: n.into(),
            damaged: None,
        }
    }

    fn place() -> StepPlace {
        StepPlace {
            file: "Dockerfile".into(),
            line: 3,
            instruction: "RUN".into(),
        }
    }

    #[test]
    fn jobs_run_in_order_and_their_blobs_wait_for_them() {
        let order = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            let mut writer = LayerWriter::start(scope);
            let gate = Arc::new((Mutex::new(false), Condvar::new()));
            let g = gate.clone();
            let order = &order;
            let first = writer.submit(
                place(),
                Box::new(move |_| {
                    let (open, cv) = &*g;
                    let mut open = open.lock().unwrap();
                    while !*open {
                        open = cv.wait(open).unwrap();
                    }
                    order.lock().unwrap().push(1);
                    Ok(written(1))
                }),
            );
            let second = writer.submit(
                place(),
                Box::new(move |_| {
                    order.lock().unwrap().push(2);
                    Ok(written(2))
                }),
            );
            // Nothing ran yet: the first job waits for the gate.
            assert!(order.lock().unwrap().is_empty());
            *gate.0.lock().unwrap() = true;
            gate.1.notify_all();
            assert_eq!(second.descriptor().unwrap().size, 2);
            assert_eq!(first.descriptor().unwrap().size, 1);
            let totals = writer.finish();
            assert_eq!(totals.reused, 3);
            assert!(totals.failed.is_none());
        });
        assert_eq!(order.into_inner().unwrap(), [1, 2]);
    }

    #[test]
    fn the_writer_yields_to_the_steps_until_the_build_waits_for_it() {
        hoist_oci::testing::assert_root("SCHED_IDLE and back");
        // SAFETY: sched_getscheduler on the calling thread.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        std::thread::scope(|scope| {
            let mut writer = LayerWriter::start(scope);
            let gate = Arc::new((Mutex::new(false), Condvar::new()));
            let g = gate.clone();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (s1, s2) = (seen.clone(), seen.clone());
            let first = writer.submit(
                place(),
                Box::new(move |_| {
                    s1.lock().unwrap().push(policy());
                    let (open, cv) = &*g;
                    let mut open = open.lock().unwrap();
                    while !*open {
                        open = cv.wait(open).unwrap();
                    }
                    // Waited for (below) by now: back to normal.
                    s1.lock().unwrap().push(policy());
                    Ok(written(1))
                }),
            );
            while seen.lock().unwrap().is_empty() {
                std::thread::yield_now();
            }
            let waiter = scope.spawn(move || first.descriptor().map(|d| d.size).ok());
            // The job has started (idle); the waiter has asked once no
            // thread is idle any more.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let idle = || !idle_threads().is_empty();
            while idle() && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            let restored = !idle();
            // The gate opens either way, so that a failure ends the test.
            *gate.0.lock().unwrap() = true;
            gate.1.notify_all();
            assert!(
                restored,
                "waiting did not put the writer back to the normal policy"
            );
            assert_eq!(waiter.join().unwrap(), Some(1));
            let second = writer.submit(
                place(),
                Box::new(move |_| {
                    s2.lock().unwrap().push(policy());
                    Ok(written(2))
                }),
            );
            assert_eq!(second.descriptor().unwrap().size, 2);
            writer.finish();
            assert_eq!(
                *seen.lock().unwrap(),
                [libc::SCHED_IDLE, libc::SCHED_OTHER, libc::SCHED_OTHER]
            );
        });
    }

    #[test]
    fn a_failed_job_fails_its_blob_with_the_step_and_the_totals() {
        std::thread::scope(|scope| {
            let mut writer = LayerWriter::start(scope);
            let blob = writer.submit(
                place(),
                Box::new(|_| Err(StepError::invalid("no space left", None))),
            );
            let error = blob.descriptor().unwrap_err();
            assert_eq!(error.to_string(), "Dockerfile:3: RUN");
            let cause = std::error::Error::source(&error).unwrap();
            assert_eq!(cause.to_string(), "cannot write the step's layer");
            assert_eq!(cause.source().unwrap().to_string(), "no space left");
            let failed = writer.finish().failed.unwrap();
            assert!(
                matches!(&failed, BuildError::Step { place, source } if place.line == 3 && matches!(**source, StepError::Written { .. })),
                "{failed:?}"
            );
        });
    }

    #[test]
    fn dropping_the_writer_stops_the_job_under_way_and_skips_the_queue() {
        let ran_second = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let writer = LayerWriter::start(scope);
            let started = Arc::new((Mutex::new(false), Condvar::new()));
            let s = started.clone();
            let first = writer.submit(
                place(),
                Box::new(move |stop| {
                    *s.0.lock().unwrap() = true;
                    s.1.notify_all();
                    let mut out = Stoppable {
                        inner: io::sink(),
                        stop,
                    };
                    // Writes until stopped: only the drop below ends this.
                    loop {
                        if let Err(e) = out.write_all(b"x") {
                            assert_eq!(e.to_string(), "the build stopped");
                            return Err(StepError::invalid("stopped", None));
                        }
                        std::thread::yield_now();
                    }
                }),
            );
            let ran = &ran_second;
            let second = writer.submit(
                place(),
                Box::new(move |_| {
                    ran.store(true, Ordering::SeqCst);
                    Ok(written(2))
                }),
            );
            let mut up = started.0.lock().unwrap();
            while !*up {
                up = started.1.wait(up).unwrap();
            }
            drop(up);
            drop(writer);
            assert!(first.descriptor().is_err());
            assert!(second.descriptor().is_err());
        });
        assert!(!ran_second.load(Ordering::SeqCst));
    }
}
