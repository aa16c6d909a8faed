//! A tiny authoritative DNS server over UDP for the `dns+`/`dnssrv+` tests:
//! it answers A and SRV questions from a zone the test changes while the
//! querier runs (every other question, AAAA included, gets an empty
//! NOERROR answer; unknown names get NXDOMAIN). TTLs are 0. Only what
//! hickory-resolver sends is parsed: one question, no compression in it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::UdpSocket;

/// Names are lowercase without the trailing dot.
#[derive(Default, Debug)]
pub struct Zone {
    pub a: HashMap<String, Vec<Ipv4Addr>>,
    /// Name to `(port, target)`.
    pub srv: HashMap<String, Vec<(u16, String)>>,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    pub zone: Arc<Mutex<Zone>>,
    pub queries: Arc<std::sync::atomic::AtomicUsize>,
}

const TYPE_A: u16 = 1;
const TYPE_SRV: u16 = 33;

/// The question's name (labels joined by dots) and the offset after it.
fn read_name(msg: &[u8], mut i: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = *msg.get(i)? as usize;
        i += 1;
        if len == 0 {
            return Some((labels.join(".").to_ascii_lowercase(), i));
        }
        if len & 0xc0 != 0 {
            return None; // compression is not used in questions
        }
        labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).into_owned());
        i += len;
    }
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// The answer to one query, or `None` for a message that is not one.
fn answer(query: &[u8], zone: &Zone) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let (name, end) = read_name(query, 12)?;
    let qtype = u16::from_be_bytes([*query.get(end)?, *query.get(end + 1)?]);
    let question = &query[12..end + 4];
    let known = zone.a.contains_key(&name) || zone.srv.contains_key(&name);
    let mut records: Vec<(u16, Vec<u8>)> = Vec::new();
    match qtype {
        TYPE_A => {
            for ip in zone.a.get(&name).into_iter().flatten() {
                records.push((TYPE_A, ip.octets().to_vec()));
            }
        }
        TYPE_SRV => {
            for (port, target) in zone.srv.get(&name).into_iter().flatten() {
                let mut rdata = vec![0, 10, 0, 10]; // priority, weight
                rdata.extend_from_slice(&port.to_be_bytes());
                write_name(&mut rdata, target);
                records.push((TYPE_SRV, rdata));
            }
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[0..2]); // id
    let rd = query[2] & 0x01;
    out.push(0x84 | rd); // QR, AA, RD echoed
    out.push(if known { 0x00 } else { 0x03 }); // NOERROR / NXDOMAIN
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for (t, rdata) in records {
        out.extend_from_slice(&[0xc0, 12]); // pointer to the question's name
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&0u32.to_be_bytes()); // TTL 0
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

/// Starts the server on 127.0.0.1 with an empty zone.
pub async fn start() -> DnsServer {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let zone = Arc::new(Mutex::new(Zone::default()));
    let queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (z, n) = (zone.clone(), queries.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let reply = answer(&buf[..len], &z.lock());
            if let Some(reply) = reply {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = sock.send_to(&reply, peer).await;
            }
        }
    });
    DnsServer {
        addr,
        zone,
        queries,
    }
}
