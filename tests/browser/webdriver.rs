//! A WebDriver client small enough to read: chromedriver's W3C endpoints,
//! spoken over HTTP/1.1 on `std` sockets, with JSON from serde_json. It
//! drives headless Chromium as a user would: it loads a page, types into
//! it, waits on what the page shows, and takes screenshots.
//!
//! - [`Tools`]: where Chromium and chromedriver are, or why the tests
//!   cannot run.
//! - [`Driver`]: chromedriver, running, on a port it chose.
//! - [`Browser`]: one session, a headless Chromium with a profile of its
//!   own.
//!
//! Every wait is on an event: chromedriver's line saying it listens, a
//! script in the page that answers when the page shows something.
//! [`SAFETY_TIMEOUT`] only keeps a broken browser from hanging a test.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::tcp::SAFETY_TIMEOUT;

/// Where Debian's `chromium` and `chromium-driver` packages put them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The size of every browser window, and so of screenshots.
const WINDOW: &str = "1100,720";

/// The key WebDriver types for Enter.
pub const ENTER: char = '\u{E007}';

/// How a W3C element reference is keyed in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Chromium and chromedriver, found.
#[derive(Debug, Clone)]
pub struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Tools {
    /// Chromium and chromedriver, at Debian's paths or where `CHROMIUM`
    /// and `CHROMEDRIVER` say. When either is missing the browser tests
    /// cannot run: with `CI` set that fails the test, and otherwise it
    /// says so on the terminal and the caller skips the test.
    #[track_caller]
    pub fn find() -> Option<Self> {
        let chromium = tool("CHROMIUM", CHROMIUM);
        let chromedriver = tool("CHROMEDRIVER", CHROMEDRIVER);
        let missing: Vec<String> = [&chromium, &chromedriver]
            .into_iter()
            .filter(|path| !path.is_file())
            .map(|path| path.display().to_string())
            .collect();
        if missing.is_empty() {
            return Some(Self {
                chromium,
                chromedriver,
            });
        }
        let needed = format!(
            "the browser tests need Chromium and chromedriver, and {} is missing: \
             `apt-get install chromium chromium-driver` on Debian or Ubuntu, \
             or set CHROMIUM and CHROMEDRIVER to their paths",
            missing.join(" and ")
        );
        if std::env::var_os("CI").is_some() {
            panic!("{needed}");
        }
        // Straight to the terminal: the test harness keeps what a passing
        // test prints to itself.
        let _ = writeln!(std::io::stderr(), "skipped a browser test: {needed}");
        None
    }
}

fn tool(variable: &str, default: &str) -> PathBuf {
    std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// chromedriver, running; killed when dropped.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    port: u16,
    chromium: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a port it chooses, and waits for the line
    /// that says which.
    pub fn start(tools: &Tools) -> Self {
        let mut child = Command::new(&tools.chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", tools.chromedriver.display()));
        let stdout = child.stdout.take().expect("chromedriver's stdout");
        let (ready, port) = std_mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end, so that chromedriver never writes to a full
            // pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
                {
                    let _ = ready.send(port);
                }
            }
        });
        let mut driver = Self {
            child,
            port: 0,
            chromium: tools.chromium.clone(),
        };
        driver.port = port
            .recv_timeout(SAFETY_TIMEOUT)
            .expect("chromedriver did not say it was listening");
        driver
    }

    /// A new browser: a headless Chromium with a fresh profile.
    pub fn browser(&self) -> Browser<'_> {
        static PROFILES: AtomicUsize = AtomicUsize::new(0);
        let profile = std::env::temp_dir().join(format!(
            "stream_multiplexer-browser-{}-{}",
            std::process::id(),
            PROFILES.fetch_add(1, Ordering::Relaxed)
        ));
        // A profile left by a run that was killed is not reused.
        let _ = std::fs::remove_dir_all(&profile);
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": self.chromium,
                        "args": [
                            "--headless",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            format!("--window-size={WINDOW}"),
                            format!("--user-data-dir={}", profile.display()),
                        ],
                    },
                    // Scripts that wait on the page give up after this:
                    // a safety net, as every other timeout here.
                    "timeouts": { "script": millis(SAFETY_TIMEOUT / 2) },
                }
            }
        });
        let session = self
            .call("POST", "/session", Some(&capabilities))
            .unwrap_or_else(|error| panic!("start a browser: {error}"));
        let session = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Browser {
            driver: self,
            session,
            profile,
        }
    }

    /// One command: a request to chromedriver and the `value` of its
    /// answer.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("reach chromedriver");
        stream
            .set_read_timeout(Some(SAFETY_TIMEOUT))
            .expect("set a read timeout");
        let request = format!(
            "{method} {path} HTTP/1.1\r\n\
             Host: 127.0.0.1:{}\r\n\
             Content-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .expect("send to chromedriver");
        let (status, answer) = read_response(stream);
        let mut answer: Value = serde_json::from_slice(&answer).unwrap_or_else(|error| {
            panic!(
                "chromedriver's answer to {method} {path} is not JSON ({error}): {}",
                String::from_utf8_lossy(&answer)
            )
        });
        let value = answer["value"].take();
        if status == 200 {
            Ok(value)
        } else {
            Err(Failure {
                status,
                error: value["error"].as_str().unwrap_or("").to_owned(),
                message: value["message"].as_str().unwrap_or("").to_owned(),
            })
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command chromedriver refused or that failed.
#[derive(Debug)]
pub struct Failure {
    status: u16,
    /// The W3C error code, such as `script timeout`.
    error: String,
    message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.error, self.status, self.message)
    }
}

/// Reads an HTTP/1.1 response with a `Content-Length` body: its status
/// and its body.
fn read_response(stream: TcpStream) -> (u16, Vec<u8>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("chromedriver's status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("a status line from chromedriver, got {line:?}"));
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("chromedriver's headers");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("a content length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("chromedriver's answer");
    (status, body)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// One browser session; closed, and its profile removed, when dropped.
#[derive(Debug)]
pub struct Browser<'a> {
    driver: &'a Driver,
    session: String,
    profile: PathBuf,
}

impl Browser<'_> {
    /// Loads `url`, and returns once the page has loaded (its scripts have
    /// run).
    pub fn open(&self, url: &str) {
        self.command("POST", "url", json!({ "url": url }))
            .unwrap_or_else(|error| panic!("open {url}: {error}"));
    }

    /// Types `text` into the element `selector` finds, key by key, as a
    /// user would ([`ENTER`] presses Enter).
    pub fn type_into(&self, selector: &str, text: &str) {
        let element = self
            .command(
                "POST",
                "element",
                json!({ "using": "css selector", "value": selector }),
            )
            .unwrap_or_else(|error| panic!("find {selector}: {error}"));
        let id = element[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("an element reference: {element}"));
        self.command(
            "POST",
            &format!("element/{id}/value"),
            json!({ "text": text }),
        )
        .unwrap_or_else(|error| panic!("type {text:?} into {selector}: {error}"));
    }

    /// Runs `script` in the page, as a function of `args`, and gives
    /// what it returns.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "execute/sync",
            json!({ "script": script, "args": args }),
        )
        .unwrap_or_else(|error| panic!("run a script: {error}"))
    }

    /// Runs `script` in the page, as a function of `args` and then of a
    /// callback, and gives what it passes the callback; fails with
    /// `script timeout` if it never calls it.
    pub fn execute_async(&self, script: &str, args: Value) -> Result<Value, Failure> {
        self.command(
            "POST",
            "execute/async",
            json!({ "script": script, "args": args }),
        )
    }

    /// The page as it shows now, as a PNG.
    pub fn screenshot(&self) -> Vec<u8> {
        let encoded = self
            .command_get("screenshot")
            .unwrap_or_else(|error| panic!("take a screenshot: {error}"));
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("a base64 screenshot")
    }

    fn command(&self, method: &str, command: &str, body: Value) -> Result<Value, Failure> {
        let path = format!("/session/{}/{command}", self.session);
        self.driver.call(method, &path, Some(&body))
    }

    fn command_get(&self, command: &str) -> Result<Value, Failure> {
        let path = format!("/session/{}/{command}", self.session);
        self.driver.call("GET", &path, None)
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        // Closes the browser; chromedriver waits for it to exit.
        let _ = self
            .driver
            .call("DELETE", &format!("/session/{}", self.session), None);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
