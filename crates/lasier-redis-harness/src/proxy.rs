//! A TCP proxy between a client and a server that delays or holds the
//! traffic on command: a slow or hung store without touching the store.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::resp::CommandSplitter;

/// What the [`Proxy`] does to the traffic, from the moment it is
/// [set](Proxy::set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forwards everything at once.
    #[default]
    None,
    /// Forwards requests at once and every reply this long after it
    /// arrived: a store that answers slowly.
    Delay(Duration),
    /// Forwards nothing in either direction (new connections are still
    /// accepted): a store that hangs, or a network that drops every packet.
    /// What is held is delivered, in order, once the fault is lifted, as
    /// TCP would deliver it after retransmissions.
    Blackhole,
}

/// A command a client sent through the [`Proxy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCommand {
    /// When the proxy received it (whether it forwarded it then or held it).
    pub at: Instant,
    /// Its name, upper case (`EVALSHA`; `CLIENT SETINFO`, `SCRIPT LOAD` with
    /// their subcommand).
    pub name: String,
    /// The number of the client connection it came on, from 0 in order of
    /// acceptance.
    pub connection: usize,
}

#[derive(Debug)]
struct Relay {
    upstream: SocketAddr,
    fault: Mutex<Fault>,
    sent: Mutex<Vec<SentCommand>>,
    /// Both sockets of every connection, to cut them all at once.
    sockets: Mutex<Vec<TcpStream>>,
    accepted: AtomicUsize,
    stopped: AtomicBool,
    /// Whether commands are recorded in `sent`.
    recording: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Relay {
    fn fault(&self) -> Fault {
        *lock(&self.fault)
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// A TCP proxy on a free port of 127.0.0.1 in front of `upstream` (a Redis
/// server), that a test makes slow or silent with [`set`](Self::set), and
/// that records every command clients send through it. Stops (and cuts
/// every connection) when dropped.
///
/// Each connection is served by a few threads; fine for tests.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    relay: Arc<Relay>,
}

/// How often the forwarding threads look at the fault and the stop flag.
const TICK: Duration = Duration::from_millis(5);

impl Proxy {
    /// Starts a proxy to `upstream`, forwarding everything.
    ///
    /// # Panics
    ///
    /// If it cannot listen on 127.0.0.1.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let relay = Arc::new(Relay {
            upstream,
            fault: Mutex::new(Fault::None),
            sent: Mutex::new(Vec::new()),
            sockets: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            recording: AtomicBool::new(true),
        });
        let accepting = Arc::clone(&relay);
        thread::spawn(move || accept(&listener, &accepting));
        Self { addr, relay }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:port/` through the proxy, with `password` if
    /// given.
    pub fn url(&self, password: Option<&str>) -> String {
        match password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port()),
            None => format!("redis://127.0.0.1:{}/", self.port()),
        }
    }

    /// Sets what happens to the traffic from now on.
    pub fn set(&self, fault: Fault) {
        *lock(&self.relay.fault) = fault;
    }

    /// Whether to record the commands clients send from now on (it does
    /// by default). Benches turn it off: the record grows with every
    /// command, and parsing them costs CPU the client would rather have.
    /// Set it before the traffic starts: a command cut in two by the switch
    /// is not recognised.
    pub fn set_recording(&self, on: bool) {
        self.relay.recording.store(on, Ordering::Release);
    }

    /// Every command clients sent so far, in the order received.
    pub fn sent(&self) -> Vec<SentCommand> {
        lock(&self.relay.sent).clone()
    }

    /// How many client connections it accepted so far.
    pub fn connections(&self) -> usize {
        self.relay.accepted.load(Ordering::Acquire)
    }

    /// Cuts every open connection (both sides), as a server restart or a
    /// network failure would; new ones are accepted as before.
    pub fn cut_connections(&self) {
        for socket in lock(&self.relay.sockets).drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.relay.stopped.store(true, Ordering::Release);
        self.cut_connections();
        // Wakes the accepting thread up, so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

fn accept(listener: &TcpListener, relay: &Arc<Relay>) {
    for client in listener.incoming() {
        if relay.stopped() {
            return;
        }
        let Ok(client) = client else { continue };
        let number = relay.accepted.fetch_add(1, Ordering::AcqRel);
        let Ok(server) = TcpStream::connect_timeout(&relay.upstream, Duration::from_secs(1)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let sockets = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        );
        let (Ok(client_w), Ok(server_w), Ok(client_kept), Ok(server_kept)) = sockets else {
            continue;
        };
        lock(&relay.sockets).extend([client_kept, server_kept]);
        pipe(client, server_w, Arc::clone(relay), Some(number));
        pipe(server, client_w, Arc::clone(relay), None);
    }
}

/// Forwards `from` to `to` on two threads: one reads (and, for requests,
/// records commands), one writes what was read when the fault allows.
/// `requests` is the connection's number for the client-to-server
/// direction, `None` for replies.
fn pipe(from: TcpStream, to: TcpStream, relay: Arc<Relay>, requests: Option<usize>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reading = Arc::clone(&relay);
    thread::spawn(move || read_side(from, &tx, &reading, requests));
    thread::spawn(move || write_side(to, &rx, &relay, requests.is_none()));
}

fn read_side(
    mut from: TcpStream,
    tx: &Sender<(Instant, Vec<u8>)>,
    relay: &Relay,
    requests: Option<usize>,
) {
    let _ = from.set_read_timeout(Some(TICK * 4));
    let mut splitter = CommandSplitter::default();
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        if relay.stopped() {
            return;
        }
        // Replies stay in the kernel while the store hangs.
        if requests.is_none() && relay.fault() == Fault::Blackhole {
            thread::sleep(TICK);
            continue;
        }
        match from.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                let at = Instant::now();
                if let Some(connection) =
                    requests.filter(|_| relay.recording.load(Ordering::Acquire))
                {
                    let names = splitter.feed(&buffer[..n]);
                    lock(&relay.sent).extend(names.into_iter().map(|name| SentCommand {
                        at,
                        name,
                        connection,
                    }));
                }
                if tx.send((at, buffer[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn write_side(mut to: TcpStream, rx: &Receiver<(Instant, Vec<u8>)>, relay: &Relay, replies: bool) {
    loop {
        let (at, bytes) = match rx.recv_timeout(TICK * 4) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => {
                if relay.stopped() {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        };
        loop {
            if relay.stopped() {
                return;
            }
            match relay.fault() {
                Fault::Blackhole => thread::sleep(TICK),
                Fault::Delay(delay) if replies => {
                    let due = at + delay;
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    // In steps, so that lifting the fault takes effect.
                    thread::sleep((due - now).min(TICK));
                }
                _ => break,
            }
        }
        if to.write_all(&bytes).is_err() {
            return;
        }
    }
}
