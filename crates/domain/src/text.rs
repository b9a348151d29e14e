//! User-facing messages with the stable numeric ids Kratos clients key
//! their translations on. The ids and context keys match Kratos; the
//! English wording is Latchkey's own.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Info,
    Error,
    Success,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: u32,
    pub text: String,
    #[serde(rename = "type")]
    pub kind: MessageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
}

fn info(id: u32, text: &str) -> Message {
    Message { id, text: text.into(), kind: MessageType::Info, context: None }
}

fn error(id: u32, text: impl Into<String>, context: Option<Value>) -> Message {
    Message { id, text: text.into(), kind: MessageType::Error, context }
}

// Labels (1010xxx login, 1040xxx registration, 1070xxx nodes).
pub fn label_sign_in_with_password() -> Message {
    info(1010022, "Sign in with password")
}
pub fn label_sign_in_refresh() -> Message {
    info(1010003, "Please confirm this action by verifying that it is you.")
}
pub fn label_sign_up() -> Message {
    info(1040001, "Sign up")
}
pub fn label_continue_registration() -> Message {
    info(1040003, "Continue")
}
pub fn label_back() -> Message {
    info(1040008, "Back")
}
pub fn info_choose_credentials() -> Message {
    info(1040009, "Please choose a credential to authenticate yourself with.")
}
pub fn label_password() -> Message {
    info(1070001, "Password")
}
pub fn label_id() -> Message {
    info(1070004, "ID")
}
/// The label of a trait node, from the schema's `title`.
pub fn label_trait(title: &str, name: &str) -> Message {
    Message { context: Some(json!({"title": title, "name": name})), ..info(1070002, title) }
}

// Flow errors (40x0xxx).
pub fn login_flow_expired(expired_at: chrono::DateTime<chrono::Utc>, ago: chrono::Duration) -> Message {
    expired(4010001, expired_at, ago)
}
pub fn registration_flow_expired(
    expired_at: chrono::DateTime<chrono::Utc>,
    ago: chrono::Duration,
) -> Message {
    expired(4040001, expired_at, ago)
}
fn expired(id: u32, expired_at: chrono::DateTime<chrono::Utc>, ago: chrono::Duration) -> Message {
    error(
        id,
        format!("This form expired {} minutes ago; please try again.", ago.num_minutes().max(0)),
        Some(json!({"expired_at": expired_at, "expired_at_unix": expired_at.timestamp()})),
    )
}
pub fn identity_disabled() -> Message {
    error(4010011, "This account is disabled.", None)
}
/// Login throttling refused the attempt. Kratos has no such message, so
/// the id is Latchkey's own: 4019xxx, the top of Kratos's login block
/// (which ends at 4010011), where Kratos's own numbering will not reach.
pub fn login_throttled(retry_after_seconds: u64, retry_at: chrono::DateTime<chrono::Utc>) -> Message {
    error(
        4019001,
        format!(
            "Too many failed sign-in attempts. Please wait {retry_after_seconds} seconds before trying again."
        ),
        Some(json!({"retry_after_seconds": retry_after_seconds, "retry_at_unix": retry_at.timestamp()})),
    )
}

// Validation (4000xxx).
pub fn validation_generic(reason: &str) -> Message {
    error(4000001, reason.to_string(), Some(json!({"reason": reason})))
}
pub fn required(property: &str) -> Message {
    error(4000002, format!("Property {property} is missing."), Some(json!({"property": property})))
}
pub fn max_length(max: usize, actual: usize) -> Message {
    error(
        4000017,
        format!("The value is {actual} characters long; at most {max} are allowed."),
        Some(json!({"max_length": max, "actual_length": actual})),
    )
}
/// `value` is what the user typed, already stripped of control characters.
pub fn invalid_email(value: &str) -> Message {
    error(4000040, "Please enter a valid email address.", Some(json!({"value": value})))
}
pub fn invalid_credentials() -> Message {
    error(4000006, "The identifier or password is incorrect. Check both and try again.", None)
}
pub fn duplicate_credentials() -> Message {
    error(4000007, "An account with the same identifier (email, phone, username, ...) exists already.", None)
}
pub fn missing_identifier() -> Message {
    error(4000009, "Could not find any login identifiers. Did you forget to set them?", None)
}
pub fn password_policy(id: u32, text: String, context: Value) -> Message {
    error(id, text, Some(context))
}
pub fn no_login_method() -> Message {
    error(4010002, "No sign-in method matches this request. Did you fill out the form correctly?", None)
}
pub fn no_registration_method() -> Message {
    error(4010003, "No sign-up method matches this request. Did you fill out the form correctly?", None)
}
pub fn label_save() -> Message {
    info(1070003, "Save")
}
pub fn settings_saved() -> Message {
    Message { kind: MessageType::Success, ..info(1050001, "Your changes have been saved.") }
}
pub fn settings_flow_expired(expired_at: chrono::DateTime<chrono::Utc>, ago: chrono::Duration) -> Message {
    expired(4050001, expired_at, ago)
}
pub fn no_settings_method() -> Message {
    error(4010004, "No settings method matches this request. Did you fill out the form correctly?", None)
}
pub fn label_email() -> Message {
    info(1070007, "Email")
}
pub fn label_continue() -> Message {
    info(1070009, "Continue")
}
pub fn label_resend_code() -> Message {
    info(1070008, "Resend code")
}
pub fn label_recovery_code() -> Message {
    info(1070010, "Recovery code")
}
pub fn recovery_code_sent() -> Message {
    info(
        1060003,
        "If that address belongs to an account, an email with a recovery code is on its way. Enter the code below.",
    )
}
pub fn recovery_code_invalid() -> Message {
    error(4060006, "The recovery code is invalid or has already been used. Please try again.", None)
}
pub fn recovery_flow_expired(expired_at: chrono::DateTime<chrono::Utc>, ago: chrono::Duration) -> Message {
    expired(4060005, expired_at, ago)
}
pub fn no_recovery_method() -> Message {
    error(4010005, "No recovery method matches this request. Did you fill out the form correctly?", None)
}
pub fn recovered(privileged_until: chrono::DateTime<chrono::Utc>) -> Message {
    Message {
        kind: MessageType::Success,
        context: Some(json!({
            "privileged_session_expires_at": privileged_until,
            "privileged_session_expires_at_unix": privileged_until.timestamp(),
        })),
        ..info(1060001, "You recovered your account. Please change your password now.")
    }
}

// Sign-up by emailed code (1040xxx, 4040xxx).
pub fn label_send_sign_up_code() -> Message {
    info(1040006, "Send sign up code")
}
pub fn label_registration_code() -> Message {
    info(1070012, "Registration code")
}
pub fn registration_code_sent() -> Message {
    info(
        1040005,
        "An email with a code is on its way to the address you gave. If none arrives, check the address and sign up again.",
    )
}
pub fn registration_code_invalid() -> Message {
    error(4040003, "The registration code is invalid or has already been used. Please try again.", None)
}
pub fn traits_mismatch() -> Message {
    error(4000036, "The traits sent do not match the ones this flow was started with.", None)
}

// Verification (1080xxx, 4070xxx).
pub fn label_verification_code() -> Message {
    info(1070011, "Verification code")
}
pub fn verification_code_sent() -> Message {
    info(
        1080003,
        "If that address belongs to an account, an email with a verification code is on its way. Enter the code below.",
    )
}
pub fn verified() -> Message {
    Message { kind: MessageType::Success, ..info(1080002, "Your email address is now verified.") }
}
pub fn verification_code_invalid() -> Message {
    error(4070006, "The verification code is invalid or has already been used. Please try again.", None)
}
pub fn verification_flow_expired(
    expired_at: chrono::DateTime<chrono::Utc>,
    ago: chrono::Duration,
) -> Message {
    expired(4070005, expired_at, ago)
}
pub fn verification_already_done() -> Message {
    error(
        4070002,
        "This address was already verified with this form; there is nothing left to do here.",
        None,
    )
}
pub fn no_verification_method() -> Message {
    error(4010006, "No verification method matches this request. Did you fill out the form correctly?", None)
}
pub fn address_not_verified() -> Message {
    error(4000010, "This account is not active yet: please verify your email address first.", None)
}

// Second factors at login (1010xxx).
pub fn login_second_factor_due() -> Message {
    info(1010004, "Please finish signing in with your second factor.")
}
pub fn label_totp_code() -> Message {
    info(1010006, "Code from your authenticator app")
}
pub fn label_lookup_code() -> Message {
    info(1010007, "One of your backup recovery codes")
}
pub fn login_with_totp() -> Message {
    info(1010009, "Sign in with your authenticator app")
}
pub fn login_with_lookup() -> Message {
    info(1010010, "Sign in with a backup recovery code")
}

// Second factors in settings (1050xxx) and their errors (4000xxx).
pub fn label_verify_code() -> Message {
    info(1070006, "Verify code")
}
pub fn totp_unlink() -> Message {
    info(1050004, "Remove the authenticator app")
}
pub fn totp_qr_label() -> Message {
    info(1050005, "QR code for your authenticator app")
}
/// The TOTP key in base32, for typing into an app that cannot scan.
pub fn totp_secret(secret: &str) -> Message {
    Message { context: Some(json!({ "secret": secret })), ..info(1050006, secret) }
}
pub fn totp_secret_label() -> Message {
    info(1050017, "Your authenticator app's key, if you cannot scan the QR code.")
}
pub fn lookup_reveal() -> Message {
    info(1050007, "Show backup recovery codes")
}
pub fn lookup_regenerate() -> Message {
    info(1050008, "Make new backup recovery codes")
}
pub fn lookup_confirm() -> Message {
    info(1050011, "Save these backup recovery codes")
}
pub fn lookup_disable() -> Message {
    info(1050016, "Turn off backup recovery codes")
}
pub fn lookup_codes_label() -> Message {
    info(1050010, "Your backup recovery codes. Keep them somewhere safe: each works once.")
}
/// One code of the list, still usable.
pub fn lookup_code(code: &str) -> Message {
    Message { context: Some(json!({ "secret": code })), ..info(1050009, code) }
}
/// One code of the list, spent.
pub fn lookup_code_used(at: chrono::DateTime<chrono::Utc>) -> Message {
    Message {
        context: Some(json!({ "used_at": at, "used_at_unix": at.timestamp() })),
        ..info(1050014, &format!("Used {}", at.format("%Y-%m-%d %H:%M:%S UTC")))
    }
}
/// The whole list: `shown` is each code, or "used"; `each` the messages above.
pub fn lookup_codes(shown: &[String], each: &[Message]) -> Message {
    Message { context: Some(json!({ "secrets": each })), ..info(1050015, &shown.join(", ")) }
}
pub fn totp_code_wrong() -> Message {
    error(4000008, "That authentication code is not right. Please try again.", None)
}
pub fn no_totp_device() -> Message {
    error(4000011, "You have not set up an authenticator app.", None)
}
pub fn lookup_code_already_used() -> Message {
    error(4000012, "That backup recovery code was used already.", None)
}
pub fn no_lookup_codes() -> Message {
    error(4000014, "You have no backup recovery codes.", None)
}
pub fn lookup_code_invalid() -> Message {
    error(4000016, "That backup recovery code is not right.", None)
}

// Login by emailed code (Kratos's `code` method).
pub fn label_send_sign_in_code() -> Message {
    info(1010015, "Send sign in code")
}
pub fn label_login_code() -> Message {
    info(1070013, "Login code")
}
pub fn login_code_sent() -> Message {
    info(
        1010014,
        "If that address belongs to an account, an email with a sign-in code is on its way. Enter the code below.",
    )
}
/// A code went to an address of the signed-in identity (a second factor).
pub fn login_code_sent_to_you() -> Message {
    info(1010025, "A code was sent to your address. If it does not arrive, ask for another one.")
}
/// The button sending a second-factor code to `address`.
pub fn send_code_to(address: &str) -> Message {
    Message {
        context: Some(json!({ "address": address, "channel": "email" })),
        ..info(1010023, &format!("Send code to {address}"))
    }
}
pub fn login_code_invalid() -> Message {
    error(4010008, "The sign-in code is invalid or was already used. Please try again.", None)
}
pub fn login_address_unknown() -> Message {
    error(4010010, "That address is not one of this account's addresses.", None)
}
