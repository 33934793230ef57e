//! Telling systemd how the worker is doing, for a `Type=notify` unit
//! (`contrib/systemd/lambdaworker@.service`): `READY=1` once the worker would answer `/status`
//! with `ready`, `STOPPING=1` when it begins to shut down. Outside systemd (`NOTIFY_SOCKET`
//! unset) these do nothing.

use std::net::SocketAddr;

use sd_notify::NotifyState;

/// `READY=1`, with a status line naming the address.
pub fn ready(addr: SocketAddr) {
    let status = format!("serving on {addr}");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// `STOPPING=1`: the worker finishes its calls and removes its sandboxes.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing calls, removing sandboxes"),
    ]);
}

fn send(states: &[NotifyState]) {
    // The environment is left as it is: the variable is read again for STOPPING, and sandboxes
    // never see it (they start with an environment of their own).
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}
