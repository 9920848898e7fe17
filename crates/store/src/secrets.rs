//! Secrets every replica of a server must share (the web UI signs its form tokens with one):
//! made once, on first use, by whichever process asks first, and read by the others.

use shipyard_core::entities::now_millis;
use shipyard_core::{Error, Result};

use crate::db::Database;

impl Database {
    /// The secret named `name`: 256 random bits as hex, created on first use. Concurrent first
    /// uses agree: one insert wins, every caller reads the winner.
    pub async fn shared_secret(&self, name: &str) -> Result<String> {
        let name = name.to_owned();
        // Two v4 UUIDs: 244 bits from the operating system's generator.
        let fresh = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        self.write(move |c| {
            Box::pin(async move {
                let insert = c.stmt(
                    "INSERT INTO secrets (name, value, created_time) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                    [name.as_str().into(), fresh.into(), now_millis().into()],
                );
                c.execute(insert).await?;
                let read = c.stmt("SELECT value FROM secrets WHERE name = $1", [name.as_str().into()]);
                let row = c
                    .fetch_optional(read)
                    .await?
                    .ok_or_else(|| Error::Internal(format!("secret '{name}' vanished")))?;
                row.get("value")
            })
        })
        .await
    }
}
