//! UDP datagrams in batches: `recvmmsg` and `sendmmsg` on Linux, one
//! datagram per system call elsewhere, on a blocking socket that a thread
//! of its own reads (see `serve_udp` in server.rs).
//!
//! Why our own code: one `recvfrom` and one `sendto` per query was the
//! largest item of the server's CPU under load (bench/README.md); a batch
//! moves up to [`BATCH`] datagrams per call, as Knot and NSD do. The calls
//! are two libc functions over buffers allocated once per socket; the crate
//! wrappers (nix) build their headers anew for every call.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Datagrams moved by one system call at most.
pub(crate) const BATCH: usize = 32;

/// The largest UDP payload (RFC 768 over IPv4: 65,535 less the headers).
const MAX_DATAGRAM: usize = 65_535;

/// Buffers for receiving a batch, allocated once per socket. Pages of the
/// buffers that no datagram reaches are never touched, so they cost address
/// space, not memory.
pub(crate) struct ReceiveBatch {
    buffers: Box<[u8]>,
    received: Vec<(usize, Option<SocketAddr>)>,
    #[cfg(target_os = "linux")]
    sys: linux::Headers,
}

impl ReceiveBatch {
    pub(crate) fn new() -> ReceiveBatch {
        let mut batch = ReceiveBatch {
            buffers: vec![0u8; BATCH * MAX_DATAGRAM].into_boxed_slice(),
            received: Vec::with_capacity(BATCH),
            #[cfg(target_os = "linux")]
            sys: linux::Headers::new(),
        };
        // The headers point into `buffers`, a heap block that stays where it
        // is for the batch's life (moving the batch does not move it).
        #[cfg(target_os = "linux")]
        batch.sys.prepare_receive(&mut batch.buffers, MAX_DATAGRAM);
        batch
    }

    /// Blocks until a datagram is waiting (or the socket's read timeout
    /// passes), then takes up to [`BATCH`] of those waiting. Once the
    /// socket's reading side is shut down it returns at once (with empty
    /// datagrams on Linux).
    #[cfg(target_os = "linux")]
    pub(crate) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received.clear();
        self.sys.receive(socket, MAX_DATAGRAM, &mut self.received)
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received.clear();
        let (len, client) = socket.recv_from(&mut self.buffers[..MAX_DATAGRAM])?;
        self.received.push((len, Some(client)));
        Ok(1)
    }

    /// The `index`th datagram of the last batch and its sender (`None` for
    /// an address family we do not serve).
    pub(crate) fn datagram(&self, index: usize) -> (&[u8], Option<SocketAddr>) {
        let (len, client) = self.received[index];
        let start = index * MAX_DATAGRAM;
        (&self.buffers[start..start + len], client)
    }
}

/// Responses waiting to go out together.
pub(crate) struct SendBatch {
    pending: Vec<(Vec<u8>, SocketAddr)>,
    /// The buffers of sent responses, emptied, for the next answers to be
    /// written into ([`SendBatch::spare_buffer`]): no allocation per answer.
    spare: Vec<Vec<u8>>,
    /// Kept between calls: filling 32 fresh headers and addresses for
    /// every call cost more than the answer itself at low rates.
    #[cfg(target_os = "linux")]
    sys: linux::Headers,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            pending: Vec::with_capacity(BATCH),
            spare: Vec::with_capacity(BATCH),
            #[cfg(target_os = "linux")]
            sys: linux::Headers::new(),
        }
    }
}

/// Buffers larger than this are not kept (a rare large answer's memory goes
/// back to the allocator).
const SPARE_CAPACITY: usize = 4096;

impl SendBatch {
    pub(crate) fn push(&mut self, message: Vec<u8>, client: SocketAddr) {
        self.pending.push((message, client));
    }

    /// Responses waiting.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// An empty buffer to write an answer into: a sent one when there is one.
    pub(crate) fn spare_buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Sends everything pending, waiting for room in the socket's send
    /// buffer if it is full. A datagram the kernel refuses (an unreachable
    /// address) is dropped and the rest still go out.
    pub(crate) fn flush(&mut self, socket: &UdpSocket) {
        let mut start = 0;
        while start < self.pending.len() {
            let batch = &self.pending[start..self.pending.len().min(start + BATCH)];
            #[cfg(target_os = "linux")]
            let sent = self.sys.send(socket, batch);
            #[cfg(not(target_os = "linux"))]
            let sent = send_one(socket, batch);
            match sent {
                Ok(sent) => start += sent.max(1),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("udp send to {}: {e}", self.pending[start].1);
                    start += 1;
                }
            }
        }
        for (mut message, _) in self.pending.drain(..) {
            if self.spare.len() < BATCH && message.capacity() <= SPARE_CAPACITY {
                message.clear();
                self.spare.push(message);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn send_one(socket: &UdpSocket, batch: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    let (message, client) = &batch[0];
    socket.send_to(message, *client).map(|_| 1)
}

/// Sends one datagram without blocking (`WouldBlock` when the send buffer
/// is full), for answers finished on the runtime, away from the socket's
/// thread.
pub(crate) fn send_now(socket: &UdpSocket, message: &[u8], client: SocketAddr) -> io::Result<()> {
    #[cfg(unix)]
    let sent = socket2::SockRef::from(socket).send_to_with_flags(
        message,
        &client.into(),
        libc::MSG_DONTWAIT,
    );
    #[cfg(not(unix))]
    let sent = socket.send_to(message, client);
    sent.map(|_| ())
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use super::BATCH;

    /// The message headers and address buffers of one receive batch.
    pub(super) struct Headers {
        addrs: Box<[libc::sockaddr_storage; BATCH]>,
        iovecs: Box<[libc::iovec; BATCH]>,
        headers: Box<[libc::mmsghdr; BATCH]>,
    }

    // SAFETY: the raw pointers inside are rewritten before every use and
    // point only into buffers owned by the same `ReceiveBatch`.
    unsafe impl Send for Headers {}
    unsafe impl Sync for Headers {}

    impl Headers {
        pub(super) fn new() -> Headers {
            // SAFETY: all-zero is a valid value of these plain C structs.
            unsafe {
                Headers {
                    addrs: Box::new(zeroed()),
                    iovecs: Box::new(zeroed()),
                    headers: Box::new(zeroed()),
                }
            }
        }

        /// Points header `i` at slot `i` of `buffers` (`slot` bytes each),
        /// once: the buffers stay in place for as long as the headers.
        pub(super) fn prepare_receive(&mut self, buffers: &mut [u8], slot: usize) {
            for i in 0..BATCH {
                let buffer = &mut buffers[i * slot..(i + 1) * slot];
                self.iovecs[i] = libc::iovec {
                    iov_base: buffer.as_mut_ptr().cast(),
                    iov_len: slot,
                };
                let header = &mut self.headers[i];
                header.msg_hdr.msg_name = (&raw mut self.addrs[i]).cast();
                header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                header.msg_hdr.msg_iov = &raw mut self.iovecs[i];
                header.msg_hdr.msg_iovlen = 1;
            }
        }

        /// Receives up to [`BATCH`] datagrams into the prepared buffers,
        /// blocking for the first (`MSG_WAITFORONE`).
        pub(super) fn receive(
            &mut self,
            socket: &UdpSocket,
            slot: usize,
            received: &mut Vec<(usize, Option<SocketAddr>)>,
        ) -> io::Result<usize> {
            // SAFETY: every header points at its slot of the batch's buffers
            // (`prepare_receive`) and at an address buffer of the declared
            // size, all owned by the batch and alive for the call.
            let count = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    self.headers.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if count < 0 {
                return Err(io::Error::last_os_error());
            }
            let count = count as usize;
            for i in 0..count {
                let header = &mut self.headers[i];
                let len = header.msg_len as usize;
                received.push((len.min(slot), socket_addr(&self.addrs[i])));
                // The kernel wrote these; the next call needs them as prepared.
                header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                header.msg_hdr.msg_flags = 0;
            }
            Ok(count)
        }

        /// Sends the first [`BATCH`] of `batch` in one `sendmmsg` (blocking
        /// while the send buffer is full); returns how many went out. Only
        /// the headers used are filled.
        pub(super) fn send(
            &mut self,
            socket: &UdpSocket,
            batch: &[(Vec<u8>, SocketAddr)],
        ) -> io::Result<usize> {
            let count = batch.len().min(BATCH);
            for (i, (message, client)) in batch.iter().take(count).enumerate() {
                self.iovecs[i] = libc::iovec {
                    iov_base: message.as_ptr() as *mut libc::c_void,
                    iov_len: message.len(),
                };
                let header = &mut self.headers[i];
                header.msg_hdr.msg_name = (&raw mut self.addrs[i]).cast();
                header.msg_hdr.msg_namelen = write_addr(&mut self.addrs[i], client);
                header.msg_hdr.msg_iov = &raw mut self.iovecs[i];
                header.msg_hdr.msg_iovlen = 1;
                header.msg_hdr.msg_control = std::ptr::null_mut();
                header.msg_hdr.msg_controllen = 0;
                header.msg_hdr.msg_flags = 0;
            }
            // SAFETY: the first `count` headers point at live messages of
            // `batch` and at addresses written just above; the kernel only
            // reads them.
            let sent = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.headers.as_mut_ptr(),
                    count as u32,
                    0,
                )
            };
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(sent as usize)
        }
    }

    /// Writes `addr` as a C socket address into `storage`; returns its length.
    fn write_addr(storage: &mut libc::sockaddr_storage, addr: &SocketAddr) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(v4) => {
                // SAFETY: sockaddr_storage is large and aligned enough for any
                // socket address type.
                let sin = unsafe { &mut *(storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                };
                sin.sin_zero = [0; 8];
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(v6) => {
                // SAFETY: as above.
                let sin6 = unsafe { &mut *(storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_flowinfo = v6.flowinfo();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                };
                sin6.sin6_scope_id = v6.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket on `addr` whose reads give up after 5 s, so a test fails
    /// rather than hangs.
    fn bound_at(addr: &str) -> io::Result<UdpSocket> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        Ok(socket)
    }

    fn bound() -> UdpSocket {
        bound_at("127.0.0.1:0").unwrap()
    }

    #[test]
    fn a_batch_receives_every_waiting_datagram_with_its_sender() {
        let server = bound();
        let client = bound();
        let to = server.local_addr().unwrap();
        for i in 0..5u8 {
            client.send_to(&[i; 3], to).unwrap();
        }
        let mut batch = ReceiveBatch::new();
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let count = batch.receive(&server).unwrap();
            for i in 0..count {
                let (data, from) = batch.datagram(i);
                assert_eq!(from, Some(client.local_addr().unwrap()));
                seen.push(data.to_vec());
            }
        }
        let expected: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 3]).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn more_than_a_batch_is_sent_in_order_to_each_client() {
        let server = bound();
        let a = bound();
        let b = bound();
        let mut replies = SendBatch::default();
        let total = BATCH + 7;
        for i in 0..total {
            let to = if i % 2 == 0 { &a } else { &b };
            replies.push(vec![i as u8], to.local_addr().unwrap());
        }
        replies.flush(&server);
        assert!(replies.pending.is_empty());
        let mut buf = [0u8; 16];
        for (socket, parity) in [(&a, 0), (&b, 1)] {
            for i in (0..total).filter(|i| i % 2 == parity) {
                let (len, from) = socket.recv_from(&mut buf).unwrap();
                assert_eq!(from, server.local_addr().unwrap());
                assert_eq!(&buf[..len], &[i as u8]);
            }
        }
    }

    #[test]
    fn ipv6_senders_are_read_back() {
        let Ok(server) = bound_at("[::1]:0") else {
            return; // no IPv6 loopback here
        };
        let client = bound_at("[::1]:0").unwrap();
        client.send_to(b"v6", server.local_addr().unwrap()).unwrap();
        let mut batch = ReceiveBatch::new();
        let count = batch.receive(&server).unwrap();
        assert_eq!(count, 1);
        assert_eq!(
            batch.datagram(0),
            (&b"v6"[..], Some(client.local_addr().unwrap()))
        );
        // And answered through a send batch.
        let mut replies = SendBatch::default();
        replies.push(b"back".to_vec(), client.local_addr().unwrap());
        replies.flush(&server);
        let mut buf = [0u8; 8];
        let (len, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..len], from),
            (&b"back"[..], server.local_addr().unwrap())
        );
    }
}
