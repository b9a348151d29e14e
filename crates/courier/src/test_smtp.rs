//! A real SMTP server for tests (the `mailin` protocol engine on a loopback
//! socket): what Latchkey sends is received over an actual SMTP dialogue
//! and recorded. Built only with the `test-smtp` feature, so it never ships.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};

use mailin::{Action, Handler, Response, SessionBuilder, response};

/// One message as the server saw it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub helo: String,
    pub from: String,
    pub to: Vec<String>,
    pub auth: Option<(String, String)>,
    pub data: Vec<u8>,
    /// Which connection (counted from 1 as accepted) carried the message.
    pub connection: usize,
}

#[derive(Clone, Default)]
struct Recorder {
    current: Received,
    received: Arc<Mutex<Vec<Received>>>,
    /// `greylist-` recipients already turned away once.
    greylisted: Arc<Mutex<HashSet<String>>>,
}

impl Handler for Recorder {
    fn helo(&mut self, _ip: IpAddr, domain: &str) -> Response {
        self.current.helo = domain.to_string();
        response::OK
    }

    /// Recipients starting with `unknown-` do not exist: 550, a permanent
    /// failure, as a real relay answers for an unknown mailbox. Those
    /// starting with `greylist-` are greylisted: 451 (transient) the first
    /// time, accepted after.
    fn rcpt(&mut self, to: &str) -> Response {
        let to = to.trim_start_matches('<');
        if to.starts_with("unknown-") {
            return response::NO_MAILBOX;
        }
        if to.starts_with("greylist-") && self.greylisted.lock().unwrap().insert(to.to_string()) {
            return Response::custom(451, "Greylisted, try again later".to_string());
        }
        response::OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current.from = from.to_string();
        self.current.to = to.to_vec();
        self.current.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.received.lock().unwrap().push(self.current.clone());
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.current.auth = Some((user.to_string(), password.to_string()));
        response::AUTH_OK
    }
}

/// Starts a plain SMTP server on a free loopback port, serving each
/// connection on its own thread (clients keep pooled connections open),
/// and returns its port and what it receives. With `auth`, it offers AUTH PLAIN without TLS, which real
/// servers must not do but which lets the test see the decoded credentials.
pub fn start_server(auth: bool) -> (u16, Arc<Mutex<Vec<Received>>>) {
    start_server_on(TcpListener::bind("127.0.0.1:0").unwrap(), auth)
}

/// Like [`start_server`], on a listener the test bound itself (to bring a
/// server up on a port that was down).
pub fn start_server_on(listener: TcpListener, auth: bool) -> (u16, Arc<Mutex<Vec<Received>>>) {
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder { received: received.clone(), ..Recorder::default() };
    let mut builder = SessionBuilder::new("mailin.test");
    if auth {
        builder.enable_auth(mailin::AuthMechanism::Plain).insecure_enable_plaintext_auth();
    }
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let Ok(peer) = stream.peer_addr() else { continue };
            let mut recorder = recorder.clone();
            recorder.current.connection = n + 1;
            let mut session = builder.build(peer.ip(), recorder);
            std::thread::spawn(move || {
                let Ok(mut writer) = stream.try_clone() else { return };
                let mut reader = BufReader::new(stream);
                let _ = session.greeting().write_to(&mut writer);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let res = session.process(&line);
                    match res.action {
                        Action::Reply => {
                            let _ = res.write_to(&mut writer);
                            let _ = writer.flush();
                        }
                        Action::Close => {
                            let _ = res.write_to(&mut writer);
                            break;
                        }
                        Action::NoReply => {}
                        Action::UpgradeTls => break,
                    }
                }
            });
        }
    });
    (port, received)
}
