//! tokio-tungstenite peer for wsbench:
//! `peer-tokio-tungstenite echo|broadcast|pubsub PORT`.
//!
//! One current-thread runtime (the comparison pins every server to one core).
//! Echo feeds every message back and flushes once per batch of messages that
//! are ready; broadcast sends every message to every client, sender included,
//! through one writer task per connection. Pubsub speaks the subset of
//! wsreactor's topic protocol that wsbench uses: text
//! `{"op":"subscribe"|"unsubscribe","topics":[..]}` requests, binary publishes
//! `[0x02][topic_len][topic][payload]`, and binary deliveries
//! `[0x01][topic_len][topic][seq: u64 BE][payload]`, encoded once per publish
//! and the same bytes handed to every subscriber's writer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::stream::SplitSink;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

type Clients = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>>;

/// A topic's subscribers (connection id, writer channel) and its last seq.
#[derive(Default)]
struct Topic {
    seq: u64,
    subscribers: Vec<(u64, mpsc::UnboundedSender<Message>)>,
}

type Topics = Arc<Mutex<HashMap<String, Topic>>>;

fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(64 << 20))
}

async fn echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await
    else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if !(msg.is_binary() || msg.is_text()) {
            continue; // pings are answered and closes handled by tungstenite
        }
        if ws.feed(msg).await.is_err() {
            return;
        }
        // Everything already received goes out with one flush.
        while let Some(Some(Ok(msg))) = ws.next().now_or_never() {
            if (msg.is_binary() || msg.is_text()) && ws.feed(msg).await.is_err() {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

/// The writer task of a connection: sends what arrives on its channel and
/// flushes once per batch of messages that are ready.
fn spawn_writer(
    mut sink: SplitSink<WebSocketStream<TcpStream>, Message>,
) -> (mpsc::UnboundedSender<Message>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.feed(msg).await.is_err() {
                return;
            }
            while let Ok(msg) = rx.try_recv() {
                if sink.feed(msg).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    (tx, writer)
}

async fn broadcast(stream: TcpStream, id: u64, clients: Clients) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await else {
        return;
    };
    let (sink, mut source) = ws.split();
    let (tx, writer) = spawn_writer(sink);
    if let Ok(mut c) = clients.lock() {
        c.insert(id, tx);
    }
    while let Some(Ok(msg)) = source.next().await {
        if (msg.is_binary() || msg.is_text())
            && let Ok(c) = clients.lock()
        {
            for tx in c.values() {
                let _ = tx.send(msg.clone());
            }
        }
    }
    if let Ok(mut c) = clients.lock() {
        c.remove(&id);
    }
    writer.abort();
}

async fn pubsub(stream: TcpStream, id: u64, topics: Topics) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await else {
        return;
    };
    let (sink, mut source) = ws.split();
    let (tx, writer) = spawn_writer(sink);
    let mut mine = HashSet::new(); // this connection's topics
    while let Some(Ok(msg)) = source.next().await {
        let reply = match msg {
            Message::Text(text) => match parse_request(&text) {
                Ok((subscribe, names)) => {
                    if let Ok(mut t) = topics.lock() {
                        for name in &names {
                            if !subscribe {
                                if mine.remove(name) {
                                    leave(&mut t, name, id);
                                }
                            } else if mine.insert(name.clone()) {
                                let topic = t.entry(name.clone()).or_default();
                                topic.subscribers.push((id, tx.clone()));
                            }
                        }
                    }
                    let op = if subscribe { "subscribed" } else { "unsubscribed" };
                    let names = serde_json::to_string(&names).unwrap_or_default();
                    format!(r#"{{"op":"{op}","topics":{names}}}"#)
                }
                Err(e) => error_reply(&e),
            },
            Message::Binary(bin) => match publish(&bin, &topics) {
                Ok(()) => continue,
                Err(e) => error_reply(e),
            },
            _ => continue, // pings are answered and closes handled by tungstenite
        };
        let _ = tx.send(Message::text(reply));
    }
    if let Ok(mut t) = topics.lock() {
        for name in &mine {
            leave(&mut t, name, id);
        }
    }
    writer.abort();
}

fn leave(topics: &mut HashMap<String, Topic>, name: &str, id: u64) {
    if let Some(topic) = topics.get_mut(name) {
        topic.subscribers.retain(|(sub, _)| *sub != id);
    }
}

/// Parses `{"op":"subscribe"|"unsubscribe","topics":[...]}` into subscribe
/// (true) or unsubscribe (false) and the topics, in order, duplicates merged.
fn parse_request(text: &str) -> Result<(bool, Vec<String>), String> {
    let req: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let subscribe = match req["op"].as_str() {
        Some("subscribe") => true,
        Some("unsubscribe") => false,
        Some(op) => return Err(format!("unknown op `{op}`")),
        None => return Err("a request is an object with a string `op`".into()),
    };
    let bad = || "`topics` must be a non-empty array of 1 to 255 byte strings".to_string();
    let list = req["topics"].as_array().filter(|l| !l.is_empty()).ok_or_else(bad)?;
    let mut names: Vec<String> = Vec::with_capacity(list.len());
    for name in list {
        let name = name.as_str().filter(|n| (1..=255).contains(&n.len())).ok_or_else(bad)?;
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    Ok((subscribe, names))
}

/// Handles `[0x02][topic_len][topic][payload]`: encodes the delivery
/// `[0x01][topic_len][topic][seq: u64 BE][payload]` once and hands the same
/// bytes to every subscriber of the topic.
fn publish(msg: &[u8], topics: &Topics) -> Result<(), &'static str> {
    let [0x02, len, rest @ ..] = msg else {
        return Err("a binary message is a publish: 0x02, topic length, topic, payload");
    };
    let Some((name, payload)) = rest.split_at_checked(usize::from(*len)) else {
        return Err("binary publish ends inside its header");
    };
    let name = match std::str::from_utf8(name) {
        Ok(n) if !n.is_empty() => n,
        _ => return Err("the topic must be 1 to 255 bytes of UTF-8"),
    };
    let Ok(mut t) = topics.lock() else { return Ok(()) };
    let topic = t.entry(name.to_owned()).or_default();
    topic.seq += 1;
    let mut out = Vec::with_capacity(1 + 1 + name.len() + 8 + payload.len());
    out.push(0x01);
    out.push(*len);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&topic.seq.to_be_bytes());
    out.extend_from_slice(payload);
    let delivery = Bytes::from(out);
    for (_, tx) in &topic.subscribers {
        let _ = tx.send(Message::Binary(delivery.clone()));
    }
    Ok(())
}

fn error_reply(message: &str) -> String {
    let message = serde_json::to_string(message).unwrap_or_default();
    format!(r#"{{"op":"error","code":"bad_request","message":{message}}}"#)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("echo").to_string();
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(9001);
    if !["echo", "broadcast", "pubsub"].contains(&mode.as_str()) {
        eprintln!("usage: peer-tokio-tungstenite echo|broadcast|pubsub PORT");
        std::process::exit(2);
    }
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("tokio-tungstenite {mode} listening on 127.0.0.1:{port}");
    let clients: Clients = Arc::default();
    let topics: Topics = Arc::default();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                next_id += 1;
                match mode.as_str() {
                    "echo" => tokio::spawn(echo(stream)),
                    "broadcast" => tokio::spawn(broadcast(stream, next_id, clients.clone())),
                    _ => tokio::spawn(pubsub(stream, next_id, topics.clone())),
                };
            }
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}
