//! One-time codes sent by email, shared by recovery and verification: how
//! a code is made and stored (only a keyed hash), the form that asks for it,
//! and the checks a submitted code passes (attempts per flow, wrong guesses
//! per address across flows, attempts per code, each counted atomically in
//! the store before the comparison; constant-time comparison).
//!
//! The per-address budget bounds guessing without handing anyone a lockout
//! to aim at a victim: past the budget a code is still judged on the first
//! attempt made against it, so the owner who asks for a fresh code and types
//! it right gets in, while every other guess is refused (see
//! [`CodeSettings::judge`] for the bound).

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Flow, FlowError};
use crate::courier::{Message, Renderer};
use crate::store::{CodePurpose, OneTimeCode, Store};
use crate::text;
use crate::ui::{Group, Input, Node};

/// How codes are signed, how long they live and how many guesses they allow.
pub struct CodeSettings {
    /// The first signs codes; every one verifies (rotation).
    pub secrets: Vec<String>,
    pub lifespan: Duration,
    /// Code attempts per flow; the next one replaces the flow.
    pub max_submissions: u64,
    /// Wrong codes per address and purpose, across flows, within
    /// `address_failure_window` (the budget). Past it a code is judged only on
    /// the first attempt made against it.
    pub address_failure_limit: u64,
    pub address_failure_window: Duration,
}

type HmacSha256 = Hmac<Sha256>;

/// Hex HMAC-SHA256 of `code` under `secret`.
pub(crate) fn hmac(secret: &str, code: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(code.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `code` hashes to `stored` under any configured secret, so codes
/// issued before a key rotation keep working; compared in constant time.
fn matches(secrets: &[String], code: &str, stored: &str) -> bool {
    secrets.iter().any(|s| hmac(s, code).as_bytes().ct_eq(stored.as_bytes()).into())
}

/// Six uniformly random decimal digits.
pub(crate) fn new_code() -> String {
    // Rejection sampling over 20 bits keeps all 10^6 codes equally likely.
    loop {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        let n = u32::from_le_bytes(bytes) & 0xF_FFFF;
        if n < 1_000_000 {
            return format!("{n:06}");
        }
    }
}

impl CodeSettings {
    /// A fresh code for `flow`, issued `at`, and the row that stores its hash.
    pub(crate) fn issue(
        &self,
        flow_id: Uuid,
        purpose: CodePurpose,
        identity_id: Option<Uuid>,
        address: &str,
        lifespan: Option<Duration>,
        at: DateTime<Utc>,
    ) -> (String, OneTimeCode) {
        let code = new_code();
        let stored = OneTimeCode {
            id: Uuid::new_v4(),
            flow_id,
            purpose,
            identity_id,
            address: address.to_string(),
            code_hmac: hmac(&self.secrets[0], &code),
            expires_at: at + lifespan.unwrap_or(self.lifespan),
            used_at: None,
            created_at: at,
        };
        (code, stored)
    }

    /// Checks a submitted code against the flow's live codes at `now` and
    /// spends it when it is right.
    pub(crate) async fn check(
        &self,
        store: &dyn Store,
        purpose: CodePurpose,
        flow: &Flow,
        submitted: &str,
        now: DateTime<Utc>,
    ) -> Result<CodeCheck, FlowError> {
        let check = self.judge(store, purpose, flow, submitted, now).await?;
        if let CodeCheck::Right(found) = &check
            && !store.use_code(found.id, now).await?
        {
            return Ok(CodeCheck::AlreadyUsed);
        }
        Ok(check)
    }

    /// [`check`](Self::check) without spending the code, for a code that
    /// arrives in an emailed link. The attempt counts like a submitted one,
    /// so looking is no cheaper a way to guess than submitting; a right
    /// code's attempt on the code is taken back, so that submitting it next
    /// is still the code's first try (which is all a code gets past the
    /// address's budget).
    pub(crate) async fn find(
        &self,
        store: &dyn Store,
        purpose: CodePurpose,
        flow: &Flow,
        submitted: &str,
        now: DateTime<Utc>,
    ) -> Result<CodeCheck, FlowError> {
        let check = self.judge(store, purpose, flow, submitted, now).await?;
        if let CodeCheck::Right(found) = &check {
            store.forget_code_attempt(found.id).await?;
        }
        Ok(check)
    }

    /// Counts the attempt and compares the code. Every limit is counted in
    /// the database before the code is compared, one atomic step each, so
    /// parallel requests cannot all slip under it:
    ///
    /// 1. the attempt on the flow: past `max_submissions` even a right code
    ///    is refused;
    /// 2. the attempt against the address across flows (per purpose), a
    ///    wrong guess unless a right code takes it back;
    /// 3. the attempt on each of the flow's live codes. While the address is
    ///    within its budget of wrong guesses any attempt is judged; past it,
    ///    only the first attempt made against a code. A refused code gets
    ///    the answer a wrong one gets.
    ///
    /// The bound: a code is 6 uniformly random digits, so a judged guess
    /// hits with probability 10^-6 (a flow has one live code). Within any
    /// `address_failure_window`, per address and purpose, at most
    /// `address_failure_limit` wrong guesses are judged within the budget
    /// (wrong guesses stay counted, and the k-th attempt sees the k-1
    /// before it), and past it at most one per code (the attempt whose count
    /// came back 1; only a right code gives its count back, and whoever sent
    /// it knew the code). So guesses judged <= budget + codes sent (plus the
    /// few still live from just before the window). With the defaults, 10 in
    /// 24h and at most 5 code mails per address and hour (the send limit),
    /// that is 10 + 5 x 24 = 130 a day: at most 1.3e-4 a day to guess a code
    /// for one address. Without a send limit the second term is only
    /// bounded by the mails an attacker can make us send.
    async fn judge(
        &self,
        store: &dyn Store,
        purpose: CodePurpose,
        flow: &Flow,
        submitted: &str,
        now: DateTime<Utc>,
    ) -> Result<CodeCheck, FlowError> {
        if store.count_code_attempt(flow.id).await? > self.max_submissions {
            return Ok(CodeCheck::TooManyAttempts);
        }
        let address = flow.state.code_address().unwrap_or_default();
        let attempt = match address.is_empty() {
            true => None,
            false => {
                let id = Uuid::new_v4();
                let since = now - self.address_failure_window;
                let count = store.count_address_attempt(purpose, address, id, now, since).await?;
                Some((id, count))
            }
        };
        let over_budget = attempt.is_some_and(|(_, count)| count > self.address_failure_limit);
        let live = store.count_live_code_attempt(flow.id, now).await?;
        // Compared whether or not it will be judged, so a refused code costs
        // the same work as a wrong one.
        // A code sent to an address with no account proves nothing, except
        // a sign-up code: its address has no account yet by design.
        let proves = |c: &OneTimeCode| c.identity_id.is_some() || purpose == CodePurpose::Registration;
        let found = live
            .into_iter()
            .find(|(c, _)| proves(c) && matches(&self.secrets, submitted.trim(), &c.code_hmac));
        // A wrong or refused code leaves its attempts counted.
        let Some((found, _)) = found.filter(|(_, tries)| !over_budget || *tries == 1) else {
            return Ok(CodeCheck::Wrong);
        };
        if let Some((id, _)) = attempt {
            store.forget_address_attempt(id).await?;
        }
        Ok(CodeCheck::Right(found))
    }
}

pub(crate) enum CodeCheck {
    Right(OneTimeCode),
    Wrong,
    TooManyAttempts,
    AlreadyUsed,
}

/// The email announcing a code (or that the address is unknown), queued `at`.
pub(crate) fn render(
    renderer: &dyn Renderer,
    to: &str,
    template: &str,
    data: &Map<String, Value>,
    at: DateTime<Utc>,
) -> Result<Message, FlowError> {
    let rendered = renderer.render(template, data).map_err(FlowError::internal)?;
    Ok(Message::new(to, rendered, template, at))
}

/// The form once a code is on its way: the code input, the submit button,
/// and a button that sends `email` again.
pub(crate) fn code_form(flow: &mut Flow, code_label: text::Message, email: &str) {
    flow.ui.nodes.retain(|n| n.name() == Some("csrf_token"));
    let mut code = code_input(code_label);
    code.attributes["pattern"] = json!("[0-9]+");
    code.attributes["maxlength"] = json!(6);
    flow.ui.nodes.push(code);
    flow.ui.nodes.push(method_input());
    flow.ui.nodes.push(Node::submit(Group::Code, "code", text::label_continue()));
    let mut resend = Node::submit(Group::Code, "code", text::label_resend_code());
    resend.attributes["name"] = json!("email");
    resend.attributes["value"] = json!(email);
    flow.ui.nodes.push(resend);
}

/// The required one-time-code input, labelled `label`.
pub(crate) fn code_input(label: text::Message) -> Node {
    Input {
        name: "code",
        input_type: "text",
        group: Group::Code,
        value: None,
        required: true,
        autocomplete: Some("one-time-code"),
        label: Some(label),
    }
    .into_node()
}

/// The hidden `method: code` every code form posts.
pub(crate) fn method_input() -> Node {
    Input {
        name: "method",
        input_type: "hidden",
        group: Group::Code,
        value: Some(json!("code")),
        required: false,
        autocomplete: None,
        label: None,
    }
    .into_node()
}

/// The hidden method, the code input, Continue and the `resend: code`
/// button, as sign-in and sign-up by code show them once a code is out.
pub(crate) fn push_code_entry(flow: &mut Flow, code_label: text::Message) {
    flow.ui.nodes.push(method_input());
    flow.ui.nodes.push(code_input(code_label));
    flow.ui.nodes.push(Node::submit(Group::Code, "code", text::label_continue()));
    let mut resend = Node::submit(Group::Code, "code", text::label_resend_code());
    resend.attributes["name"] = json!("resend");
    flow.ui.nodes.push(resend);
}

/// The form that asks for an address to send a code to.
pub(crate) fn email_form(flow: &mut Flow) {
    flow.ui.nodes.push(email_input(None));
    flow.ui.nodes.push(Node::submit(Group::Code, "code", text::label_continue()));
}

/// The address input, showing `value` (what was typed) when given.
pub(crate) fn email_input(value: Option<&str>) -> Node {
    Input {
        name: "email",
        input_type: "email",
        group: Group::Code,
        value: value.map(|v| Value::String(v.into())),
        required: true,
        autocomplete: Some("email"),
        label: Some(text::label_email()),
    }
    .into_node()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_keyed_hashes_that_survive_key_rotation() {
        let old = "the-old-secret-0123456789".to_string();
        let new = "the-new-secret-0123456789".to_string();
        let stored = hmac(&old, "123456");
        assert_eq!(stored.len(), 64);
        assert!(!stored.contains("123456"));
        // After rotation the new secret signs, the old one still verifies.
        assert!(matches(&[new.clone(), old.clone()], "123456", &stored));
        assert!(!matches(std::slice::from_ref(&new), "123456", &stored));
        assert!(!matches(&[new, old], "654321", &stored));
        let code = new_code();
        assert!(code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()));
    }
}
