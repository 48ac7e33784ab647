//! The chat example's web side as people meet it: users in a real browser
//! (headless Chromium, driven through chromedriver by
//! `tests/browser/webdriver.rs`) chatting with `nc` users (plain blocking
//! TCP sockets) in the same rooms, and the web port as `curl` meets it:
//! the page, `/metrics`, and what it refuses.
//!
//! The browser tests need Chromium and chromedriver (Debian's `chromium`
//! and `chromium-driver` packages). Without them they fail when `CI` is
//! set, and otherwise say so and pass without running.
//!
//! Each test starts its own server, with both ports free ones
//! (`CHAT_ADDR` and `CHAT_WEB_ADDR` set to `127.0.0.1:0`), and learns them
//! from the lines it prints first. Nothing sleeps: a browser user waits
//! for a line to show on its page (a script in the page that answers when
//! it does), an `nc` user for the line it reads; timeouts
//! (`tcp::SAFETY_TIMEOUT`) only keep a broken server or browser from
//! hanging the test.

mod tcp;
#[path = "browser/webdriver.rs"]
mod webdriver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;

use serde_json::{Value, json};
use tcp::child::example_binary;
use tcp::client::Client;
use tcp::framing::Framing;
use tcp::{SAFETY_TIMEOUT, within_safety_timeout};
use webdriver::{Browser, Driver, ENTER, Tools};

// Browsers and nc users together.

/// Two users in browsers and one on `nc`, in `#general`: each reads what
/// the others say, `/me` and `/msg` included, and the pages list the
/// room's users. The first browser's page is saved as `docs/chat.png`,
/// the README's screenshot.
#[test]
fn browser_and_nc_users_chat_in_one_room() {
    let Some(tools) = Tools::find() else {
        return;
    };
    within_safety_timeout(move || {
        let server = ChatServer::start();
        let driver = Driver::start(&tools);
        let alice = Page::named(&driver, &server, "alice");
        let bob = Page::named(&driver, &server, "bob");
        alice.wait_for("* bob joined #general");
        let mut carol = nc_user(server.chat, "carol");
        alice.wait_for("* carol joined #general");
        bob.wait_for("* carol joined #general");

        alice.say("hi bob, hi carol! I am in a browser");
        bob.wait_for("<alice> hi bob, hi carol! I am in a browser");
        assert_eq!(
            carol.recv_line(),
            "<alice> hi bob, hi carol! I am in a browser"
        );

        bob.say("so am I, in another one");
        alice.wait_for("<bob> so am I, in another one");
        assert_eq!(carol.recv_line(), "<bob> so am I, in another one");

        carol.send_line("and I am on nc, in the same room");
        alice.wait_for("<carol> and I am on nc, in the same room");
        bob.wait_for("<carol> and I am on nc, in the same room");

        alice.say("/me waves at both");
        bob.wait_for("* alice waves at both");
        assert_eq!(carol.recv_line(), "* alice waves at both");

        carol.send_line("/msg alice psst: nc users read the very same lines");
        alice.wait_for("*carol* psst: nc users read the very same lines");

        // What each page shows beside the lines, read from the server's
        // notices: the room, its users, the connection.
        for (page, nick) in [(&alice, "alice"), (&bob, "bob")] {
            assert_eq!(page.users(), ["alice", "bob", "carol"], "{nick}'s page");
            assert_eq!(page.text("#room"), "#general", "{nick}'s page");
            assert_eq!(page.text("#state"), format!("connected as {nick}"));
        }
        // Bob's own lines are on his page as the others see them.
        bob.wait_for("<bob> so am I, in another one");

        let screenshot = alice.browser.screenshot();
        assert!(screenshot.starts_with(b"\x89PNG"), "a PNG screenshot");
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("make docs/");
        std::fs::write(docs.join("chat.png"), screenshot).expect("save docs/chat.png");
    });
}

/// The server is restarted on the same ports: the page shows the
/// shutdown notice, reconnects by itself, and takes its name and room
/// again, where an `nc` user on the new server finds it.
#[test]
fn a_page_reconnects_after_a_restart_and_takes_its_name_and_room_again() {
    let Some(tools) = Tools::find() else {
        return;
    };
    within_safety_timeout(move || {
        let server = ChatServer::start();
        let driver = Driver::start(&tools);
        let alice = Page::named(&driver, &server, "alice");
        alice.say("/join den");
        alice.wait_for("* you are in #den");

        let web = server.web;
        server.shut_down();
        alice.wait_for("* server shutting down");
        let server = ChatServer::start_with_web(web);

        alice.wait_for_nth("* hello alice, you are in #general", 2);
        alice.wait_for_nth("* you are in #den", 2);
        let mut carol = nc_user(server.chat, "carol");
        carol.send_line("/join den");
        assert_eq!(carol.recv_line(), "* you are in #den");
        assert_eq!(carol.recv_line(), "* 2 users online");
        alice.wait_for("* carol joined #den");
        assert_eq!(alice.users(), ["alice", "carol"]);
        assert_eq!(alice.text("#state"), "connected as alice");
    });
}

// The web port, as curl meets it.

#[test]
fn metrics_are_served_in_prometheus_text_on_the_web_port() {
    within_safety_timeout(|| {
        let server = ChatServer::start();
        // Read her welcome: the multiplexer has accepted her.
        let _carol = nc_user(server.chat, "carol");

        let response = get(server.web, "/metrics");
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let body = response.text();
        assert!(
            body.contains("# TYPE stream_multiplexer_accepted_total counter\n"),
            "{body}"
        );
        assert!(
            body.lines()
                .any(|line| line == "stream_multiplexer_accepted_total 1"),
            "{body}"
        );
    });
}

#[test]
fn the_web_port_serves_the_page_and_refuses_the_rest() {
    within_safety_timeout(|| {
        let server = ChatServer::start();

        let page = get(server.web, "/");
        assert_eq!(page.status, 200);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(
            page.text()
                .contains(r#"<script src="chat.js" defer></script>"#)
        );
        for (path, content_type) in [
            ("/chat.js", "text/javascript; charset=utf-8"),
            ("/chat.css", "text/css; charset=utf-8"),
        ] {
            let asset = get(server.web, path);
            assert_eq!(asset.status, 200, "{path}");
            assert_eq!(asset.header("content-type"), Some(content_type), "{path}");
        }

        let head = request(server.web, "HEAD / HTTP/1.1\r\nHost: chat\r\n\r\n");
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(page.body.len().to_string().as_str())
        );
        assert!(head.body.is_empty());

        assert_eq!(get(server.web, "/nothing-here").status, 404);
        let post = request(
            server.web,
            "POST / HTTP/1.1\r\nHost: chat\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));

        let filler = "x".repeat(9 * 1024);
        let too_long = request(
            server.web,
            &format!("GET / HTTP/1.1\r\nHost: chat\r\nX-Filler: {filler}\r\n\r\n"),
        );
        assert_eq!(too_long.status, 431);

        // An upgrade goes to the WebSocket acceptor, which wants the rest
        // of the handshake's headers.
        let upgrade = request(
            server.web,
            "GET / HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\n\r\n",
        );
        assert_eq!(upgrade.status, 426);
    });
}

// The chat server and its users.

/// The chat example, running, with its web side; killed when dropped.
struct ChatServer {
    /// `None` once it has been shut down and has exited.
    child: Option<Child>,
    /// Where `nc` users connect.
    chat: SocketAddr,
    /// The page, its WebSocket, and `/metrics`.
    web: SocketAddr,
}

impl ChatServer {
    /// A server of its own, on free ports.
    fn start() -> Self {
        Self::start_with_web(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// A server whose web side is on `web`, and whose `nc` port is a free
    /// one; it has printed where it listens.
    fn start_with_web(web: SocketAddr) -> Self {
        let mut child = Command::new(example_binary("chat_server"))
            .env("CHAT_ADDR", "127.0.0.1:0")
            .env("CHAT_WEB_ADDR", web.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the chat server");
        let stdout = child.stdout.take().expect("the server's stdout");
        // Guarded before anything can fail; the addresses come next.
        let mut server = Self {
            child: Some(child),
            chat: web,
            web,
        };
        let (said, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            // To the end, so that the server never writes to a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = said.send(line);
            }
        });
        let address = |prefix: &str| {
            let line = lines
                .recv_timeout(SAFETY_TIMEOUT)
                .unwrap_or_else(|error| panic!("no `{prefix}ADDR` line: {error}"));
            line.strip_prefix(prefix)
                .and_then(|address| address.parse::<SocketAddr>().ok())
                .unwrap_or_else(|| panic!("expected `{prefix}ADDR`, got {line:?}"))
        };
        server.chat = address("listening on ");
        server.web = address("web on ");
        assert_eq!(address("websocket on "), server.web, "one web port");
        server
    }

    fn page(&self) -> String {
        format!("http://{}/", self.web)
    }

    /// SIGTERM, as a restart would send, and its exit.
    fn shut_down(mut self) {
        let mut child = self.child.take().expect("the server is running");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-s", "TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s TERM failed");
        let (exited, status) = std_mpsc::channel();
        std::thread::spawn(move || {
            let _ = exited.send(child.wait().expect("wait for the server"));
        });
        let status = status.recv_timeout(SAFETY_TIMEOUT).unwrap_or_else(|_| {
            let _ = Command::new("kill").args(["-s", "KILL", &pid]).status();
            panic!("the server did not exit");
        });
        assert!(status.success(), "the server exited with {status}");
    }
}

impl Drop for ChatServer {
    fn drop(&mut self) {
        // It may have exited already; either way it must be reaped.
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An `nc` user who has picked `nick` and is in `#general`, past the line
/// that says how many users are there.
fn nc_user(address: SocketAddr, nick: &str) -> Client {
    let mut client = Client::connect(address, Framing::Lines);
    assert!(client.recv_line().starts_with("* welcome!"));
    client.send_line(&format!("/nick {nick}"));
    assert_eq!(
        client.recv_line(),
        format!("* hello {nick}, you are in #general")
    );
    let online = client.recv_line();
    assert!(online.ends_with(" online"), "{online:?}");
    client
}

/// A chat user in a browser of its own, on the example's page.
struct Page<'a> {
    browser: Browser<'a>,
}

/// Answers (calls its last argument) once the log shows at least `count`
/// lines that are `text`, or that start with it.
const WAIT_FOR_LINES: &str = r#"
const [text, count, prefix, done] = arguments;
const log = document.getElementById('log');
const shown = () => Array.from(log.children).filter((item) =>
    prefix ? item.textContent.startsWith(text) : item.textContent === text
).length >= count;
if (shown()) {
    done(true);
} else {
    const observer = new MutationObserver(() => {
        if (shown()) {
            observer.disconnect();
            done(true);
        }
    });
    observer.observe(log, { childList: true });
}
"#;

impl<'a> Page<'a> {
    /// The page, loaded in a new browser, connected and welcomed.
    fn open(driver: &'a Driver, server: &ChatServer) -> Self {
        let page = Self {
            browser: driver.browser(),
        };
        page.browser.open(&server.page());
        page.wait(json!(["* welcome!", 1, true]));
        page
    }

    /// A user in a browser who has typed `nick` as its name.
    fn named(driver: &'a Driver, server: &ChatServer, nick: &str) -> Self {
        let page = Self::open(driver, server);
        page.say(nick);
        page.wait_for(&format!("* hello {nick}, you are in #general"));
        page
    }

    /// Types `line` into the input and presses Enter.
    fn say(&self, line: &str) {
        self.browser.type_into("#input", &format!("{line}{ENTER}"));
    }

    /// Waits until the page shows `line`.
    #[track_caller]
    fn wait_for(&self, line: &str) {
        self.wait_for_nth(line, 1);
    }

    /// Waits until the page shows `line` `count` times.
    #[track_caller]
    fn wait_for_nth(&self, line: &str, count: usize) {
        self.wait(json!([line, count, false]));
    }

    #[track_caller]
    fn wait(&self, args: Value) {
        if let Err(failure) = self.browser.execute_async(WAIT_FOR_LINES, args.clone()) {
            panic!(
                "the page never showed {args}: {failure}; it shows {:#?}",
                self.lines()
            );
        }
    }

    /// The lines the page shows.
    fn lines(&self) -> Vec<String> {
        strings(self.browser.execute(
            "return Array.from(document.getElementById('log').children, (item) => item.textContent);",
            json!([]),
        ))
    }

    /// The users the page lists.
    fn users(&self) -> Vec<String> {
        strings(self.browser.execute(
            "return Array.from(document.getElementById('users').children, (item) => item.textContent);",
            json!([]),
        ))
    }

    /// The text of the element `selector` finds.
    fn text(&self, selector: &str) -> String {
        let text = self.browser.execute(
            "return document.querySelector(arguments[0]).textContent;",
            json!([selector]),
        );
        text.as_str().expect("a text").to_owned()
    }
}

fn strings(value: Value) -> Vec<String> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|item| item.as_str().expect("a string").to_owned())
        .collect()
}

// HTTP, as curl speaks it.

/// An HTTP response, read to the end of the connection.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

fn get(address: SocketAddr, path: &str) -> Response {
    request(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: chat\r\nUser-Agent: curl/8\r\n\r\n"),
    )
}

/// Sends `request` and reads the response until the server closes the
/// connection, as it does after every answer.
fn request(address: SocketAddr, request: &str) -> Response {
    let mut stream = TcpStream::connect(address).expect("connect to the web port");
    stream
        .set_read_timeout(Some(SAFETY_TIMEOUT))
        .expect("set a read timeout");
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("a response head: {:?}", String::from_utf8_lossy(&response)));
    let head = String::from_utf8(response[..end].to_vec()).expect("a UTF-8 head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: response[end + 4..].to_vec(),
    }
}
