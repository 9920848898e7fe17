//! The wire between Shipyard and a worker: length-prefixed frames over a Unix socket, bodies
//! as JSON headers, raw bytes and Arrow IPC streams. The worker side is `shim.py`.
//!
//! A frame is `u32 length (little-endian) | u8 kind | body`, `length` counting the kind byte and
//! the body. A body that carries a header and data is `u32 header length | header JSON | data`.

use std::io::Cursor;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Frame kinds; the numbers are `shim.py`'s.
pub mod kind {
    pub const HELLO: u8 = 1;
    pub const READY: u8 = 2;
    pub const ERROR: u8 = 3;
    pub const PREDICT: u8 = 4;
    pub const TABLE: u8 = 5;
    pub const JSON: u8 = 6;
    pub const FAILED: u8 = 7;
    pub const INVOKE: u8 = 8;
    pub const INVOKED: u8 = 9;
    pub const PING: u8 = 10;
    pub const PONG: u8 = 11;
    pub const SHUTDOWN: u8 = 12;
    pub const LOAD: u8 = 13;
}

/// The largest frame read from a worker: an answer is at most a little larger than a request,
/// and requests are limited well below this by the server.
pub const MAX_FRAME: usize = 1 << 30;

/// Writes one frame whose body is `parts`, concatenated.
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, kind: u8, parts: &[&[u8]]) -> std::io::Result<()> {
    let body: usize = parts.iter().map(|p| p.len()).sum();
    let length = u32::try_from(body + 1)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a frame larger than 4 GiB"))?;
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&length.to_le_bytes());
    head[4] = kind;
    w.write_all(&head).await?;
    for part in parts {
        w.write_all(part).await?;
    }
    w.flush().await
}

/// Reads one frame: its kind and body.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut length = [0u8; 4];
    r.read_exact(&mut length).await?;
    let length = u32::from_le_bytes(length) as usize;
    if length == 0 || length > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a frame of {length} bytes")));
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind).await?;
    let mut body = vec![0u8; length - 1];
    r.read_exact(&mut body).await?;
    Ok((kind[0], body))
}

/// The header part of a body that carries one: `u32 length | JSON`.
pub fn header(value: &serde_json::Value) -> Vec<u8> {
    let json = value.to_string().into_bytes();
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// A body's header and the data after it.
pub fn split_header(body: &[u8]) -> Result<(serde_json::Value, &[u8]), String> {
    let Some((length, rest)) = body.split_first_chunk::<4>() else {
        return Err("a body shorter than its header length".into());
    };
    let length = u32::from_le_bytes(*length) as usize;
    if rest.len() < length {
        return Err("a header longer than its body".into());
    }
    let (json, data) = rest.split_at(length);
    let header = serde_json::from_slice(json).map_err(|e| format!("a header that is not JSON: {e}"))?;
    Ok((header, data))
}

/// `batch` as an Arrow IPC stream.
pub fn ipc_encode(batch: &RecordBatch) -> Result<Vec<u8>, arrow_schema::ArrowError> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, batch.schema_ref())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// An Arrow IPC stream as one batch.
pub fn ipc_decode(bytes: &[u8]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    arrow_select::concat::concat_batches(&schema, &batches)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, StringArray};

    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let h = header(&serde_json::json!({"k": 1}));
        let writer = tokio::spawn(async move { write(&mut a, kind::PREDICT, &[&h, b"data"]).await });
        let (k, body) = read(&mut b).await.unwrap();
        writer.await.unwrap().unwrap();
        assert_eq!(k, kind::PREDICT);
        let (value, data) = split_header(&body).unwrap();
        assert_eq!(value, serde_json::json!({"k": 1}));
        assert_eq!(data, b"data");
        assert!(split_header(&[9, 0, 0, 0, b'{']).is_err());
    }

    #[test]
    fn batches_round_trip_through_ipc() {
        let batch = RecordBatch::try_from_iter([
            ("x", Arc::new(Float64Array::from(vec![Some(1.5), None])) as _),
            ("s", Arc::new(StringArray::from(vec!["a", "b"])) as _),
        ])
        .unwrap();
        let back = ipc_decode(&ipc_encode(&batch).unwrap()).unwrap();
        assert_eq!(back, batch);
        assert!(ipc_decode(b"not arrow").is_err());
    }
}
