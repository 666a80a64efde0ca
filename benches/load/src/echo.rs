//! `frameguard-load echo`: the benchmark's upstream. Sends every data message back `--fanout`
//! times (resized to `--reply-size` bytes if given, the stamp kept at the front), answers
//! pings, completes close handshakes. Replies to everything one read brought in
//! leave in one write.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use frameguard_codec::{
    close_payload, encode_control, encode_message, Control, Decoder, DecoderConfig, Event, OpCode,
    Role,
};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::cli::{parse_seconds, thread_count};
use crate::handshake;
use crate::net::WsStream;
use crate::payload::{resized, MIN_SIZE};

/// Stop reading from a client that does not take its echoes beyond this much pending output.
const WRITE_HIGH_WATER: usize = 1 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection may take to flush its last frames.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
const LISTEN_BACKLOG: u32 = 4096;
/// Pause after a failed accept (e.g. out of descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

#[derive(clap::Args, Debug)]
pub struct EchoArgs {
    /// Loopback address to listen on; port 0 picks a free one. The bound address is printed.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Copies sent back for each message received (server-to-client heavy traffic).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    fanout: u32,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Size of each reply in bytes: the message with its stamp, cut or padded with words (a
    /// small request that brings back a large answer). Default: the message as received.
    #[arg(long, value_parser = clap::value_parser!(u64).range(MIN_SIZE as u64..=(16 << 20)))]
    reply_size: Option<u64>,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_message_size: usize,
    /// Exit after this many seconds, so that a forgotten server does not run forever.
    #[arg(long, default_value = "3600", value_parser = parse_seconds)]
    exit_after: Duration,
}

#[derive(Clone, Copy)]
struct EchoSettings {
    fanout: u32,
    reply_size: Option<usize>,
    max_message_size: usize,
}

pub fn run(args: EchoArgs) -> Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "--listen {}: only loopback addresses are allowed",
            args.listen
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(thread_count(args.threads))
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: EchoArgs) -> Result<()> {
    let socket = if args.listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(args.listen)
        .with_context(|| format!("bind {}", args.listen))?;
    let listener: TcpListener = socket.listen(LISTEN_BACKLOG)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;

    let settings = EchoSettings {
        fanout: args.fanout,
        reply_size: args.reply_size.map(|size| size as usize),
        max_message_size: args.max_message_size,
    };
    let stop = Instant::now() + args.exit_after;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // A client that goes away or breaks the protocol ends its own connection only;
                    // the load generator reports what it saw.
                    tokio::spawn(async move {
                        let _ = connection(stream, settings).await;
                    });
                }
                Err(_) => tokio::time::sleep(ACCEPT_RETRY).await,
            },
            _ = tokio::time::sleep_until(stop) => return Ok(()),
        }
    }
}

async fn connection(stream: TcpStream, settings: EchoSettings) -> Result<()> {
    let (stream, leftover) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake::accept(stream))
        .await
        .context("handshake timed out")??;
    let mut ws = WsStream::new(stream, leftover);
    let mut decoder = Decoder::new(DecoderConfig {
        role: Role::Server,
        allowed_rsv: 0,
        max_message_size: settings.max_message_size,
    });
    let mut close_by: Option<Instant> = None;
    loop {
        while close_by.is_none() && ws.write_buf.len() < WRITE_HIGH_WATER {
            let reply_close = match decoder.decode(&mut ws.read_buf) {
                Ok(Some(Event::Message(mut message))) => {
                    if let Some(size) = settings.reply_size {
                        message.payload = resized(&message.payload, size).into();
                        message.fragments.clear();
                    }
                    for _ in 0..settings.fanout {
                        encode_message(&mut ws.write_buf, &message, || None);
                    }
                    None
                }
                Ok(Some(Event::Control(control))) => match control.opcode {
                    OpCode::Ping => {
                        let pong = Control {
                            opcode: OpCode::Pong,
                            payload: control.payload,
                        };
                        encode_control(&mut ws.write_buf, &pong, None);
                        None
                    }
                    // Echoing the client's close code is the usual answer (RFC 6455 5.5.1).
                    OpCode::Close => Some(control),
                    _ => None,
                },
                Ok(None) => break,
                Err(error) => Some(Control {
                    opcode: OpCode::Close,
                    payload: close_payload(error.code, error.reason),
                }),
            };
            if let Some(close) = reply_close {
                encode_control(&mut ws.write_buf, &close, None);
                close_by = Some(Instant::now() + CLOSE_LINGER);
            }
        }
        if let Some(deadline) = close_by {
            // Our Close is queued: flush it and hang up; the server closes TCP first.
            return Ok(ws.flush(deadline).await?);
        }
        let want_read = ws.write_buf.len() < WRITE_HIGH_WATER;
        if ws.pump(want_read, None).await?.eof {
            return Ok(());
        }
    }
}
