//! What every program's `main` does first: logging, and the one shutdown path (a token
//! cancelled on SIGTERM or SIGINT, which every long task takes).

use tokio_util::sync::CancellationToken;

/// Starts logging to stderr with `RUST_LOG` (default `info`), colored only on a terminal (not
/// in log files).
pub fn init_logging() {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// A token cancelled on SIGTERM or SIGINT: the start of every program's one shutdown path.
/// Call it inside the Tokio runtime.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let signal = token.clone();
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            tracing::warn!("cannot listen for SIGTERM; only SIGINT stops this program cleanly");
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
            signal.cancel();
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
        signal.cancel();
    });
    token
}
