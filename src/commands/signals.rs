//! Signals, handled from the start of a long-running command: SIGINT and
//! SIGTERM stop the rig cleanly (a second one exits at once: found blocks
//! are already on disk); SIGHUP re-reads the API keys file, and nothing
//! else: its default action would end the process, so it is always caught.
//! It is held back (blocked) from the first line of `main` until then: a
//! service manager reloading a unit that has just started sends it within
//! milliseconds of exec, before any handler could be in place.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use hashrig::api::keys::{KeyStore, Reload};
use hashrig::shutdown::Shutdown;

/// What the signal thread acts on.
#[derive(Debug, Clone)]
pub struct Signals {
    /// Fired by SIGINT or SIGTERM.
    pub shutdown: Shutdown,
    /// The API keys SIGHUP re-reads, once the API is up.
    keys: Arc<Mutex<Option<Arc<KeyStore>>>>,
}

impl Signals {
    /// Has SIGHUP re-read these keys.
    pub fn reload_on_hangup(&self, keys: Arc<KeyStore>) {
        *self.keys.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys);
    }

    fn hangup(&self) {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match keys {
            Some(keys) => {
                tracing::info!(
                    "SIGHUP: re-reading the API keys from {}",
                    keys.path().display()
                );
                if let Reload::Loaded(n) = keys.reload() {
                    tracing::info!("SIGHUP: {n} API keys in force");
                }
            }
            None => tracing::info!("SIGHUP: the API is off, no keys to re-read; ignored"),
        }
    }

    fn stop(&self) {
        if self.shutdown.is_triggered() {
            eprintln!("second stop signal: exiting now");
            std::process::exit(130);
        }
        eprintln!("stopping…");
        self.shutdown.trigger();
    }
}

/// Blocks SIGHUP in this thread, and so in every thread it starts: a hangup
/// now waits, pending, until [`install`] handles it or [`release_hangup`]
/// gives it back its default action. The first thing `main` does.
pub fn hold_hangup() {
    #[cfg(unix)]
    hangup_mask(libc::SIG_BLOCK);
}

/// Unblocks SIGHUP: for a command that does not handle it (a pending one
/// then takes its default action), and in [`install`] once it is handled.
pub fn release_hangup() {
    #[cfg(unix)]
    hangup_mask(libc::SIG_UNBLOCK);
}

#[cfg(unix)]
fn hangup_mask(how: libc::c_int) {
    // SAFETY: the set is initialised by sigemptyset before use, and
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Installs the handlers (before returning, so no signal is missed: a
/// SIGHUP held back since `main` began is handled now) and serves them on
/// their own thread for the life of the process.
pub fn install() -> anyhow::Result<Signals> {
    let signals = Signals {
        shutdown: Shutdown::new(),
        keys: Arc::new(Mutex::new(None)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal handling")?;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut interrupt, mut terminate, mut hangup) = {
            let _inside = runtime.enter();
            (
                signal(SignalKind::interrupt()).context("SIGINT handler")?,
                signal(SignalKind::terminate()).context("SIGTERM handler")?,
                signal(SignalKind::hangup()).context("SIGHUP handler")?,
            )
        };
        let handler = signals.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        tokio::select! {
                            _ = interrupt.recv() => handler.stop(),
                            _ = terminate.recv() => handler.stop(),
                            _ = hangup.recv() => handler.hangup(),
                        }
                    }
                })
            })
            .context("signal thread")?;
        release_hangup();
    }
    #[cfg(not(unix))]
    {
        let handler = signals.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while tokio::signal::ctrl_c().await.is_ok() {
                        handler.stop();
                    }
                })
            })
            .context("signal thread")?;
    }
    Ok(signals)
}
