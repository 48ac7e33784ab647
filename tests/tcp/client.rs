//! A blocking `std` client, speaking either framing.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use super::SAFETY_TIMEOUT;
use super::framing::{Framing, declared_length};

/// The read buffer of a client speaking lines (std's default).
const LINE_BUFFER: usize = 8 * 1024;

/// One client on a blocking socket. Reads wait at most [`SAFETY_TIMEOUT`].
pub struct Client {
    /// Lines are read through a buffer, since the end of a line is only
    /// found by reading past it; writes go straight to the socket.
    reader: BufReader<TcpStream>,
    framing: Framing,
}

/// How reading the next message ended.
enum Next {
    /// A whole message, without its length field or newline.
    Message(Vec<u8>),
    /// The connection ended (by FIN or by reset) `cut_short` bytes into a
    /// message; 0 if it ended between two.
    End { cut_short: usize },
}

impl Client {
    /// Connects to `address`, with `TCP_NODELAY` (each write leaves at once).
    pub fn connect(address: SocketAddr, framing: Framing) -> Self {
        Self::over(TcpStream::connect(address).expect("connect"), framing)
    }

    /// Connects like [`connect`](Self::connect), with a receive buffer
    /// (`SO_RCVBUF`) of `bytes` set before the handshake, so that the window
    /// the server is offered fits it (the kernel doubles the value asked
    /// for, for its bookkeeping). Set after the handshake instead, the
    /// window would still be as large as the default buffer allowed.
    #[cfg(feature = "smol")]
    pub fn connect_with_receive_buffer(
        address: SocketAddr,
        framing: Framing,
        bytes: usize,
    ) -> Self {
        use socket2::{Domain, Protocol, Socket, Type};

        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        socket.connect(&address.into()).expect("connect");
        Self::over(socket.into(), framing)
    }

    /// A client on a connected socket.
    fn over(stream: TcpStream, framing: Framing) -> Self {
        stream
            .set_read_timeout(Some(SAFETY_TIMEOUT))
            .expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        // Frames are read at their exact lengths: no buffer, so that a
        // client costs nothing in tests that measure this process's memory.
        let capacity = match framing {
            Framing::LengthDelimited { .. } => 0,
            Framing::Lines => LINE_BUFFER,
        };
        Self {
            reader: BufReader::with_capacity(capacity, stream),
            framing,
        }
    }

    /// Writes raw bytes, framed or not.
    pub fn write(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("write");
    }

    /// Sends one message in this client's framing.
    pub fn send(&mut self, payload: &[u8]) {
        self.write(&self.framing.encode(payload));
    }

    /// Sends many messages in one write.
    pub fn send_all<'a>(&mut self, payloads: impl IntoIterator<Item = &'a [u8]>) {
        let mut wire = Vec::new();
        for payload in payloads {
            wire.extend(self.framing.encode(payload));
        }
        self.write(&wire);
    }

    /// Sends one line of text, adding its newline.
    #[track_caller]
    pub fn send_line(&mut self, line: &str) {
        assert_eq!(self.framing, Framing::Lines, "a line to a framed server");
        self.send(line.as_bytes());
    }

    /// Shuts down the sending side (a half-close): the server reads an end
    /// of file, and this client can still read.
    pub fn shutdown_write(&self) {
        self.reader
            .get_ref()
            .shutdown(Shutdown::Write)
            .expect("shutdown");
    }

    /// A second handle on the socket, to write from another thread.
    pub fn writer(&self) -> TcpStream {
        self.reader.get_ref().try_clone().expect("clone the socket")
    }

    /// Blocks until something has arrived, leaving it unread (and so, in
    /// the kernel's buffer: closing the socket then sends RST, not FIN).
    pub fn wait_readable(&self) {
        if !self.reader.buffer().is_empty() {
            return;
        }
        let peeked = self.reader.get_ref().peek(&mut [0]).expect("peek");
        assert_eq!(peeked, 1, "the connection ended");
    }

    /// Whether nothing at all has arrived, not even the end of the
    /// connection: checked without waiting, so it says what has arrived
    /// by now.
    pub fn has_received_nothing(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return false;
        }
        let socket = self.reader.get_ref();
        socket.set_nonblocking(true).expect("non-blocking");
        let peeked = socket.peek(&mut [0]);
        socket.set_nonblocking(false).expect("blocking");
        match peeked {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => true,
            // A byte, an end of file or a reset.
            _ => false,
        }
    }

    /// The next message, or `None` if the connection ended between two.
    /// Fails if it ended inside one.
    #[track_caller]
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        match self.next() {
            Next::Message(message) => Some(message),
            Next::End { cut_short: 0 } => None,
            Next::End { cut_short } => {
                panic!("the connection ended {cut_short} bytes into a message")
            }
        }
    }

    /// The next line, without its newline. Fails if the connection ended.
    #[track_caller]
    pub fn recv_line(&mut self) -> String {
        assert_eq!(self.framing, Framing::Lines, "a line from a framed server");
        let line = self.recv().expect("the server closed the connection");
        String::from_utf8(line).expect("a line of UTF-8")
    }

    /// Every message until the connection ends (by FIN or by reset), and
    /// the number of bytes of a message cut short at the end (0 if none).
    #[track_caller]
    pub fn drain(&mut self) -> (Vec<Vec<u8>>, usize) {
        let mut messages = Vec::new();
        loop {
            match self.next() {
                Next::Message(message) => messages.push(message),
                Next::End { cut_short } => return (messages, cut_short),
            }
        }
    }

    /// Expects the server to close the connection with nothing more to
    /// say: an end of file, or a reset when the server closed it with input
    /// still unread.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        let (messages, cut_short) = self.drain();
        assert!(
            messages.is_empty() && cut_short == 0,
            "more before the end: {:?}, then {cut_short} bytes of a message cut short",
            messages
                .iter()
                .map(|message| String::from_utf8_lossy(message))
                .collect::<Vec<_>>()
        );
    }

    /// Reads the next message in this client's framing.
    #[track_caller]
    fn next(&mut self) -> Next {
        match self.framing {
            Framing::LengthDelimited { width } => self.next_frame(width),
            Framing::Lines => self.next_line(),
        }
    }

    /// Reads a length field `width` bytes wide, then the payload it
    /// declares.
    #[track_caller]
    fn next_frame(&mut self, width: usize) -> Next {
        let mut field = [0; 8];
        let field = &mut field[..width];
        let n = self.fill(field);
        if n < width {
            return Next::End { cut_short: n };
        }
        let mut payload = vec![0; declared_length(field)];
        let n = self.fill(&mut payload);
        if n < payload.len() {
            return Next::End {
                cut_short: width + n,
            };
        }
        Next::Message(payload)
    }

    /// Reads up to and including a newline.
    #[track_caller]
    fn next_line(&mut self) -> Next {
        let mut line = Vec::new();
        // On a reset, what was read before it is in `line`.
        match self.reader.read_until(b'\n', &mut line) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
            Err(error) => panic!("read failed: {error}"),
        }
        if line.pop_if(|last| *last == b'\n').is_some() {
            Next::Message(line)
        } else {
            Next::End {
                cut_short: line.len(),
            }
        }
    }

    /// Reads until `buffer` is full or the connection ends (by FIN or by
    /// reset); returns how many bytes were read. Fails on a read timeout.
    #[track_caller]
    fn fill(&mut self, buffer: &mut [u8]) -> usize {
        let mut filled = 0;
        while filled < buffer.len() {
            match self.reader.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::ConnectionReset => break,
                Err(error) => panic!("read failed: {error}"),
            }
        }
        filled
    }
}
