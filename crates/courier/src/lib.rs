//! Latchkey's courier: the SMTP [`Mailer`](latchkey_domain::courier::Mailer)
//! that delivers queued messages, and the email [`Templates`] that turn a
//! template type and its data into the subject and bodies stored in the
//! outbox. The dispatcher that drives them is the domain's
//! (`latchkey_domain::courier::Dispatcher`, built by the server with this
//! crate's mailer); this crate only knows how to word a message and how to
//! hand it to an SMTP server.

mod smtp;
mod templates;

pub use smtp::{Security, SmtpConfig, SmtpConfigError, SmtpEndpoint, SmtpMailer};
pub use templates::{FetchError, SyntaxError, TemplateError, Templates, UnknownTemplate};

#[cfg(feature = "test-smtp")]
pub mod test_smtp;
