//! End-to-end delivery: a real SMTP server (the `mailin` protocol engine on a
//! blocking loopback socket) receives what [`SmtpMailer`] sends, so the
//! test covers the SMTP dialogue, authentication and the MIME layout rather
//! than lettre's builder alone.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use latchkey_courier::test_smtp::start_server;
use latchkey_courier::{SmtpConfig, SmtpMailer, Templates};
use latchkey_domain::courier::{Mailer, Message};
use latchkey_domain::time::{Clock, SystemClock};
use serde_json::json;

fn config(uri: String) -> SmtpConfig {
    SmtpConfig {
        connection_uri: uri,
        from_address: "no-reply@latchkey.test".to_string(),
        from_name: Some("Latchkey Accounts".to_string()),
        headers: BTreeMap::from([("X-Latchkey-Test".to_string(), "yes".to_string())]),
        local_name: Some("courier.latchkey.test".to_string()),
    }
}

fn recovery_message(to: &str) -> Message {
    let data = json!({"To": to, "RecoveryCode": "482913", "ExpiresInMinutes": 15});
    let rendered = Templates::builtin().render("recovery_code_valid", data.as_object().unwrap()).unwrap();
    Message::new(to, rendered, "recovery_code_valid", SystemClock.now())
}

/// Undoes the quoted-printable soft line breaks lettre may add, so the test
/// can search the body text.
fn unfold(data: &[u8]) -> String {
    String::from_utf8_lossy(data).replace("=\r\n", "")
}

#[tokio::test]
async fn delivers_a_multipart_message_to_a_real_smtp_server() {
    let (port, received) = start_server(false);
    let mailer = SmtpMailer::new(config(format!("smtp://127.0.0.1:{port}/?disable_starttls=true"))).unwrap();

    mailer.send(&recovery_message("ada@example.com")).await.unwrap();

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.helo, "courier.latchkey.test");
    assert_eq!(mail.from, "no-reply@latchkey.test");
    assert_eq!(mail.to, vec!["ada@example.com".to_string()]);
    assert!(mail.auth.is_none());

    let data = unfold(&mail.data);
    let (headers, body) = data.split_once("\r\n\r\n").expect("headers and body");
    assert!(headers.contains("From: \"Latchkey Accounts\" <no-reply@latchkey.test>"), "{headers}");
    assert!(headers.contains("To: ada@example.com"), "{headers}");
    assert!(headers.contains("Subject: 482913 is your account recovery code"), "{headers}");
    assert!(headers.contains("X-Latchkey-Test: yes"), "{headers}");
    assert!(headers.contains("multipart/alternative"), "{headers}");

    let text_part = body.split("Content-Type: text/plain").nth(1).expect("a text/plain part");
    let text_part = text_part.split("Content-Type: text/html").next().unwrap();
    assert!(text_part.contains("482913"), "{text_part}");
    assert!(text_part.contains("15 minutes"), "{text_part}");
    assert!(body.contains("Content-Type: text/html"), "{body}");
}

#[tokio::test]
async fn sends_percent_decoded_credentials_and_text_only_messages() {
    let (port, received) = start_server(true);
    let uri = format!("smtp://ada%40example.com:p%3Ass%20w@127.0.0.1:{port}/?disable_starttls=true");
    let mailer = SmtpMailer::new(config(uri)).unwrap();

    let mut message = recovery_message("bob@example.com");
    message.html_body = None;
    mailer.send(&message).await.unwrap();

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].auth, Some(("ada@example.com".to_string(), "p:ss w".to_string())));
    let data = unfold(&received[0].data);
    assert!(!data.contains("multipart"), "{data}");
    assert!(data.contains("Content-Type: text/plain"), "{data}");
    assert!(data.contains("482913"), "{data}");
}

#[tokio::test]
async fn a_closed_port_fails_quickly_without_leaking_credentials() {
    // Binding and dropping a listener yields a port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mailer =
        SmtpMailer::new(config(format!("smtp://user:s3cret-pw@127.0.0.1:{port}/?disable_starttls=true")))
            .unwrap();

    let started = Instant::now();
    let err = mailer.send(&recovery_message("ada@example.com")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
}

#[tokio::test]
async fn starttls_is_required_unless_disabled() {
    // The loopback server offers no STARTTLS, so the default `smtp://` mode
    // must refuse to send rather than fall back to plain text.
    let (port, received) = start_server(false);
    let mailer = SmtpMailer::new(config(format!("smtp://127.0.0.1:{port}/"))).unwrap();
    let err = mailer.send(&recovery_message("ada@example.com")).await.unwrap_err();
    assert!(!err.to_string().is_empty());
    assert!(received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn rejects_an_invalid_recipient_before_connecting() {
    let mailer = SmtpMailer::new(config("smtp://127.0.0.1:9/?disable_starttls=true".to_string())).unwrap();
    let err = mailer.send(&recovery_message("not an address")).await.unwrap_err();
    assert!(err.to_string().contains("recipient"), "{err}");
}

/// A backlog goes out over one pooled connection, not a handshake per message.
#[tokio::test]
async fn reuses_one_connection_for_several_messages() {
    let (port, received) = start_server(false);
    let mailer = SmtpMailer::new(config(format!("smtp://127.0.0.1:{port}/?disable_starttls=true"))).unwrap();
    for to in ["a@example.com", "b@example.com", "c@example.com"] {
        mailer.send(&recovery_message(to)).await.unwrap();
        // lettre hands a connection back to the pool on a task of its own;
        // the dispatcher's database write between two sends gives it that turn.
        tokio::task::yield_now().await;
    }
    let connections: Vec<_> = received.lock().unwrap().iter().map(|r| r.connection).collect();
    assert_eq!(connections, vec![1, 1, 1]);
}

/// 5xx replies and bad addresses are permanent (retrying cannot help); 4xx
/// replies and a relay that is not there are transient.
#[tokio::test]
async fn tells_permanent_from_transient_failures() {
    let (port, received) = start_server(false);
    let mailer = SmtpMailer::new(config(format!("smtp://127.0.0.1:{port}/?disable_starttls=true"))).unwrap();
    let unknown = mailer.send(&recovery_message("unknown-x@example.com")).await.unwrap_err();
    assert!(unknown.permanent && unknown.message.contains("550"), "{unknown:?}");
    let greylisted = mailer.send(&recovery_message("greylist-x@example.com")).await.unwrap_err();
    assert!(!greylisted.permanent && greylisted.message.contains("451"), "{greylisted:?}");
    mailer.send(&recovery_message("greylist-x@example.com")).await.unwrap();
    mailer.send(&recovery_message("fine@example.com")).await.unwrap();
    assert_eq!(received.lock().unwrap().len(), 2, "the connection stays usable after a refusal");
    let bad = mailer.send(&recovery_message("not an address")).await.unwrap_err();
    assert!(bad.permanent, "{bad:?}");

    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = SmtpMailer::new(config(format!("smtp://127.0.0.1:{closed}/?disable_starttls=true"))).unwrap();
    let refused = down.send(&recovery_message("ada@example.com")).await.unwrap_err();
    assert!(!refused.permanent, "{refused:?}");
}
