//! fastwebsockets peer for wsbench: `peer-fastwebsockets echo|broadcast PORT`.
//!
//! One current-thread runtime (the comparison pins every server to one core).
//! The HTTP upgrade is answered by hand (no hyper); frames go through
//! fastwebsockets with fragments collected, automatic pongs and closes. Echo
//! writes every message back; broadcast sends every message to every client,
//! sender included, through one writer task per connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use fastwebsockets::{
    FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocket,
};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

enum Out {
    Data(OpCode, Arc<Vec<u8>>),
    Control(OpCode, Vec<u8>),
}

type Clients = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Out>>>>;

/// Reads the upgrade request and answers 101; `None` if it is not one.
async fn upgrade(stream: &mut TcpStream) -> Option<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = std::str::from_utf8(&head).ok()?;
    let key = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("sec-websocket-key").then(|| value.trim())
    })?;
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(resp.as_bytes()).await.ok()
}

fn server_ws(stream: TcpStream) -> WebSocket<TcpStream> {
    let mut ws = WebSocket::after_handshake(stream, Role::Server);
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    ws.set_max_message_size(64 << 20);
    ws
}

async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    if upgrade(&mut stream).await.is_none() {
        return;
    }
    let mut ws = FragmentCollector::new(server_ws(stream));
    while let Ok(frame) = ws.read_frame().await {
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                let out = Frame::new(true, frame.opcode, None, frame.payload);
                if ws.write_frame(out).await.is_err() {
                    return;
                }
            }
            OpCode::Close => return,
            _ => {}
        }
    }
}

async fn broadcast(mut stream: TcpStream, id: u64, clients: Clients) {
    let _ = stream.set_nodelay(true);
    if upgrade(&mut stream).await.is_none() {
        return;
    }
    let (read, mut write) = server_ws(stream).split(tokio::io::split);
    let mut read = FragmentCollectorRead::new(read);
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    if let Ok(mut c) = clients.lock() {
        c.insert(id, tx.clone());
    }
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let res = match &out {
                Out::Data(op, data) => {
                    write.write_frame(Frame::new(true, *op, None, Payload::Borrowed(data))).await
                }
                Out::Control(op, data) => {
                    write.write_frame(Frame::new(true, *op, None, Payload::Borrowed(data))).await
                }
            };
            if res.is_err() || matches!(out, Out::Control(OpCode::Close, _)) {
                return;
            }
        }
    });
    let mut send_fn = |f: Frame<'_>| {
        let _ = tx.send(Out::Control(f.opcode, f.payload.to_vec()));
        std::future::ready(Ok::<(), std::io::Error>(()))
    };
    while let Ok(frame) = read.read_frame(&mut send_fn).await {
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                let data = Arc::new(frame.payload.to_vec());
                if let Ok(c) = clients.lock() {
                    for t in c.values() {
                        let _ = t.send(Out::Data(frame.opcode, data.clone()));
                    }
                }
            }
            OpCode::Close => break,
            _ => {}
        }
    }
    if let Ok(mut c) = clients.lock() {
        c.remove(&id);
    }
    drop(tx);
    let _ = writer.await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("echo").to_string();
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(9001);
    if mode != "echo" && mode != "broadcast" {
        eprintln!("usage: peer-fastwebsockets echo|broadcast PORT");
        std::process::exit(2);
    }
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("fastwebsockets {mode} listening on 127.0.0.1:{port}");
    let clients: Clients = Arc::default();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                next_id += 1;
                if mode == "echo" {
                    tokio::spawn(echo(stream));
                } else {
                    tokio::spawn(broadcast(stream, next_id, clients.clone()));
                }
            }
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}
