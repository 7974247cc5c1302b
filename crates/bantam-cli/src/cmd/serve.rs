//! `bantam serve`: settings from flags, `BANTAM_*` environment variables and a TOML
//! file (in that order of precedence; `bantam_server::settings`), then the HTTP
//! server.

use std::path::Path;

use anyhow::Result;
use bantam_server::{AppState, ServeSettings};
use bantam_store::Store;
use clap::Args;

/// `bantam serve`'s arguments: the server's settings (flags and their `BANTAM_*`
/// variables; the same struct reads the TOML file).
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub settings: ServeSettings,
}

pub fn serve(home: &Path, a: ServeArgs) -> Result<()> {
    let cfg = a.settings.load()?;
    let store = Store::open(home)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Compiling a client's schema or grammar recurses; 8 MiB (a main thread's
        // default) instead of tokio's 2 MiB gives deep but legitimate constraints
        // room. Reserved address space only: pages are used as touched.
        .thread_stack_size(8 << 20)
        .build()?;
    // Upstream clients need the runtime; configuration errors stop here, before
    // the port opens.
    let state = {
        let _guard = rt.enter();
        AppState::new(store, cfg)?
    };
    rt.block_on(async move {
        // Register the handlers before the port opens: a signal that arrives before
        // registration would kill the process without a graceful shutdown.
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        };
        bantam_server::serve(state, shutdown).await
    })?;
    Ok(())
}
