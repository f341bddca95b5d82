//! Frames on an agent's pipes: written (file contents paced), and read
//! within the frame limit.

use anyhow::{bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use twinsync_proto::{decode, encode, FromAgent, Request, ToAgent, MAX_FRAME};

use twinsync_helpers::pace::{Pacer, SLICE};

pub(super) type BoxRead = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
pub(super) type BoxWrite = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// Write `msg` as one frame; file contents (a write request) at the
/// `pacer`'s rate, in slices, flushing before each pause.
pub(super) async fn send_paced(
    writer: &mut BufWriter<BoxWrite>,
    msg: &ToAgent,
    pacer: Option<&mut Pacer>,
) -> std::io::Result<()> {
    let frame = encode(msg);
    let contents = matches!(
        msg,
        ToAgent::Request {
            req: Request::WriteFiles { .. },
            ..
        }
    );
    let Some(pacer) = pacer.filter(|_| contents) else {
        return writer.write_all(&frame).await;
    };
    for slice in frame.chunks(SLICE) {
        let wait = pacer.delay(slice.len(), std::time::Instant::now());
        if !wait.is_zero() {
            writer.flush().await?;
            tokio::time::sleep(wait).await;
        }
        writer.write_all(slice).await?;
    }
    Ok(())
}

pub(super) async fn read_msg(r: &mut BufReader<BoxRead>) -> Result<FromAgent> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        bail!("frame of {len} bytes exceeds the limit");
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(decode(&body)?)
}
