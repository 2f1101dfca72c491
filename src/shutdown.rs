//! Signals: the first SIGTERM or SIGINT starts a graceful shutdown; a second one exits
//! at once (status 130), for an operator who will not wait for the flush.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Exit status when a second signal cuts the graceful shutdown short.
pub const FORCED_EXIT_CODE: i32 = 130;

/// Returns a token cancelled on the first SIGTERM/SIGINT, and arms the second-signal
/// exit. Must be called inside a tokio runtime.
pub fn install() -> std::io::Result<CancellationToken> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "Signal received; shutting down gracefully (send again to exit at once)."
        );
        cancel.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(
            signal = name,
            "Second signal; exiting without finishing the flush."
        );
        std::process::exit(FORCED_EXIT_CODE);
    });
    Ok(token)
}
