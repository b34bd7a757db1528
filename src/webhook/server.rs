//! The `serve` listener.

use crate::config::Config;

pub async fn serve(_config: Config) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
