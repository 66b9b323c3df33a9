//! A network link a test can cut: a TCP relay in front of a member's peer
//! port. Members reach the member through the relay's address (its
//! advertised peer URL); cutting the link closes every relayed connection
//! and refuses new ones, so the member stops hearing from its peers while
//! still reaching them itself: a one-way partition, without root or
//! network namespaces.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct Link {
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Link {
    /// Relays connections accepted on `listener` to `target` (host:port).
    pub fn start(listener: TcpListener, target: String) -> Link {
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, open2) = (cut.clone(), open.clone());
        thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                if cut2.load(Ordering::SeqCst) {
                    continue; // dropped: refused while cut
                }
                let Ok(outbound) = TcpStream::connect(&target) else {
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (Ok(in2), Ok(out2)) = (inbound.try_clone(), outbound.try_clone()) else {
                    continue;
                };
                if let Ok(mut all) = open2.lock() {
                    all.extend(in2.try_clone());
                    all.extend(out2.try_clone());
                }
                relay(inbound, out2);
                relay(outbound, in2);
            }
        });
        Link { cut, open }
    }

    /// Cuts the link: open connections are closed, new ones refused.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Ok(mut all) = self.open.lock() {
            for stream in all.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Restores the link for new connections.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either side closes.
fn relay(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
