//! Email templates: the built-in wording for every message Latchkey sends,
//! operator overrides read from Kratos's `courier.template_override_path`
//! layout, and a deliberately small renderer. Only Go-template field
//! references (`{{ .Name }}`, `{{ .Identity.traits.email }}`, with optional
//! `{{-`/`-}}` trimming) are understood; anything richer is refused when the
//! templates are loaded, so a typo stops the start instead of mailing users a
//! half-rendered message. Values substituted into HTML are escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use latchkey_domain::courier::Rendered;
use serde_json::{Map, Value};

/// File names of one template's parts inside its override directory, as
/// Kratos names them.
const SUBJECT_FILE: &str = "email.subject.gotmpl";
const TEXT_FILE: &str = "email.body.plaintext.gotmpl";
const HTML_FILE: &str = "email.body.gotmpl";

/// Every template type Latchkey sends, with the directory Kratos uses for it
/// under the override path (`None` for Latchkey's own types).
const TYPES: &[(&str, Option<&str>)] = &[
    ("recovery_code_valid", Some("recovery_code/valid")),
    ("recovery_code_invalid", Some("recovery_code/invalid")),
    ("verification_code_valid", Some("verification_code/valid")),
    ("verification_code_invalid", Some("verification_code/invalid")),
    ("registration_code_valid", Some("registration_code/valid")),
    ("login_code_valid", Some("login_code/valid")),
    ("password_changed", None),
    ("account_recovered", None),
    ("address_changed", None),
    ("address_removed", None),
];

/// Why the templates could not be loaded; each names the file or
/// configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template override path {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot read email template {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("email template {}: {source}", path.display())]
    Syntax { path: PathBuf, source: SyntaxError },
    #[error("courier.templates must be a mapping")]
    NotAMapping,
    #[error("{key}: Latchkey has no `{name}` email")]
    UnknownName { key: String, name: String },
    #[error("{key}: {source}")]
    Fetch { key: String, source: FetchError },
    #[error("{key}: {source}")]
    ConfiguredSyntax { key: String, source: SyntaxError },
}

/// Why a `courier.templates` URL could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("not UTF-8 text")]
    NotUtf8(#[source] std::string::FromUtf8Error),
    #[error("only file:// and base64:// template URLs are supported")]
    Scheme,
}

/// A construct in a template's text that the renderer does not understand.
#[derive(Debug, thiserror::Error)]
pub enum SyntaxError {
    #[error("`{{{{` without a closing `}}}}` at line {line}")]
    Unclosed { line: usize },
    #[error(
        "only field references like `{{{{ .Name }}}}` are supported in `{{{{{action}}}}}` at line {line}"
    )]
    NotAField { action: String, line: usize },
}

/// A template type no template is loaded for.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("unknown email template type `{0}`")]
pub struct UnknownTemplate(pub String);

/// Reads a template given as `file://PATH` or `base64://DATA`; remote URLs
/// are refused so that start-up never depends on the network.
fn fetch(url: &str) -> Result<String, FetchError> {
    if let Some(path) = url.strip_prefix("file://") {
        return std::fs::read_to_string(path)
            .map_err(|source| FetchError::Read { path: path.to_string(), source });
    }
    if let Some(data) = url.strip_prefix("base64://") {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .or_else(|_| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(data.trim().trim_end_matches('='))
            })
            .map_err(FetchError::Base64)?;
        return String::from_utf8(bytes).map_err(FetchError::NotUtf8);
    }
    Err(FetchError::Scheme)
}

/// The compiled templates for every message type, ready to render.
#[derive(Debug, Clone)]
pub struct Templates {
    by_type: BTreeMap<&'static str, EmailTemplate>,
}

#[derive(Debug, Clone)]
struct EmailTemplate {
    subject: Template,
    text: Template,
    html: Option<Template>,
}

impl Templates {
    /// The built-in templates only.
    pub fn builtin() -> Templates {
        let by_type = TYPES
            .iter()
            .map(|(name, _)| {
                let (subject, text, html_body) = builtin_source(name);
                let template = EmailTemplate {
                    subject: compile_builtin(subject),
                    text: compile_builtin(text),
                    html: Some(compile_builtin(&html_page(html_body))),
                };
                (*name, template)
            })
            .collect();
        Templates { by_type }
    }

    /// The built-in templates, with each part replaced by an override file
    /// where one exists under `override_path`.
    ///
    /// For a template type such as `recovery_code_valid` the files are looked
    /// up in `<override_path>/recovery_code_valid/` and then in Kratos's
    /// directory for it, `<override_path>/recovery_code/valid/`; the first
    /// found wins. Parts are `email.subject.gotmpl`,
    /// `email.body.plaintext.gotmpl` and `email.body.gotmpl` (HTML); a missing
    /// part keeps the built-in one. An override path that is not a directory,
    /// an unreadable file or an unsupported template construct is an error
    /// naming the file.
    pub fn load(override_path: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut templates = Templates::builtin();
        let Some(root) = override_path else {
            return Ok(templates);
        };
        if !root.is_dir() {
            return Err(TemplateError::NotADirectory(root.to_path_buf()));
        }
        for (name, kratos_dir) in TYPES {
            let dirs: Vec<_> =
                std::iter::once(root.join(name)).chain(kratos_dir.map(|dir| root.join(dir))).collect();
            let find = |file: &str| -> Result<Option<Template>, TemplateError> {
                for dir in &dirs {
                    let path = dir.join(file);
                    if !path.is_file() {
                        continue;
                    }
                    let text = match std::fs::read_to_string(&path) {
                        Ok(text) => text,
                        Err(source) => return Err(TemplateError::Read { path, source }),
                    };
                    let template = match Template::compile(&text) {
                        Ok(template) => template,
                        Err(source) => return Err(TemplateError::Syntax { path, source }),
                    };
                    tracing::debug!(path = %path.display(), "loaded email template override");
                    return Ok(Some(template));
                }
                Ok(None)
            };
            let entry = templates.by_type.get_mut(name).expect("every type has a built-in template");
            if let Some(subject) = find(SUBJECT_FILE)? {
                entry.subject = subject;
            }
            if let Some(text) = find(TEXT_FILE)? {
                entry.text = text;
            }
            if let Some(html) = find(HTML_FILE)? {
                entry.html = Some(html);
            }
        }
        Ok(templates)
    }

    /// Applies `courier.templates` from the configuration: any of
    /// `email.subject`, `email.body.plaintext` and `email.body.html` given as
    /// a `file://` or `base64://` URL replaces that part of a template. A
    /// template is named as Kratos names its own, a group and a variant
    /// (`recovery_code.valid` for `recovery_code_valid`, `password.changed`
    /// for `password_changed`), or by its whole name (`password_changed`,
    /// `account_recovered`). Applied after the override path, so
    /// configuration wins.
    pub fn with_config(mut self, config: &Value) -> Result<Templates, TemplateError> {
        let Some(groups) = config.as_object() else {
            return if config.is_null() { Ok(self) } else { Err(TemplateError::NotAMapping) };
        };
        // (the key as written, the template's name, its parts)
        let mut targets = Vec::new();
        for (group, entry) in groups {
            if self.by_type.contains_key(group.as_str()) {
                targets.push((format!("courier.templates.{group}"), group.clone(), entry));
                continue;
            }
            for (variant, parts) in entry.as_object().into_iter().flatten() {
                targets.push((
                    format!("courier.templates.{group}.{variant}"),
                    format!("{group}_{variant}"),
                    parts,
                ));
            }
        }
        for (key, name, parts) in targets {
            let entry = self
                .by_type
                .iter_mut()
                .find(|(t, _)| **t == name)
                .map(|(_, e)| e)
                .ok_or_else(|| TemplateError::UnknownName { key: key.clone(), name: name.clone() })?;
            let email = parts.get("email").unwrap_or(&Value::Null);
            let load = |pointer: &str| -> Result<Option<Template>, TemplateError> {
                let Some(url) = email.pointer(pointer).and_then(Value::as_str) else {
                    return Ok(None);
                };
                let key = || format!("{key}.email{}", pointer.replace('/', "."));
                let text = fetch(url).map_err(|source| TemplateError::Fetch { key: key(), source })?;
                Template::compile(&text)
                    .map(Some)
                    .map_err(|source| TemplateError::ConfiguredSyntax { key: key(), source })
            };
            if let Some(subject) = load("/subject")? {
                entry.subject = subject;
            }
            if let Some(text) = load("/body/plaintext")? {
                entry.text = text;
            }
            if let Some(html) = load("/body/html")? {
                entry.html = Some(html);
            }
        }
        Ok(self)
    }

    /// The template types these templates can render.
    pub fn types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_type.keys().copied()
    }

    /// Renders `template_type` with `data` (e.g. `{"To": ..., "RecoveryCode": ...}`).
    ///
    /// Fields missing from `data` render as empty text. The subject is
    /// folded onto one line, since a line break cannot live in a header.
    pub fn render(
        &self,
        template_type: &str,
        data: &Map<String, Value>,
    ) -> Result<Rendered, UnknownTemplate> {
        let template =
            self.by_type.get(template_type).ok_or_else(|| UnknownTemplate(template_type.to_string()))?;
        let subject = template.subject.render(data, false);
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        Ok(Rendered {
            subject,
            text: template.text.render(data, false),
            html: template.html.as_ref().map(|html| html.render(data, true)),
        })
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::builtin()
    }
}

fn compile_builtin(source: &str) -> Template {
    Template::compile(source).expect("built-in templates compile")
}

/// A compiled template: literal text and field references in order.
#[derive(Debug, Clone, PartialEq)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    /// A dotted path into the data, `["Identity", "traits", "email"]`.
    Field(Vec<String>),
}

impl Template {
    fn compile(source: &str) -> Result<Template, SyntaxError> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut trim_next = false;
        while let Some(start) = rest.find("{{") {
            let mut literal = &rest[..start];
            if trim_next {
                literal = literal.trim_start();
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| SyntaxError::Unclosed { line: line_of(source, rest, start) })?;
            let mut action = &after[..end];
            // Go only treats `{{-` and `-}}` as trim markers when a space
            // separates them from the action, so `{{-3}}` stays a number.
            if let Some(stripped) = action.strip_prefix("- ") {
                literal = literal.trim_end();
                action = stripped;
            }
            trim_next = false;
            if let Some(stripped) = action.strip_suffix(" -") {
                trim_next = true;
                action = stripped;
            }
            push_literal(&mut parts, literal);
            let field = parse_field(action.trim()).ok_or_else(|| SyntaxError::NotAField {
                action: action.to_string(),
                line: line_of(source, rest, start),
            })?;
            parts.push(Part::Field(field));
            rest = &after[end + 2..];
        }
        let literal = if trim_next { rest.trim_start() } else { rest };
        push_literal(&mut parts, literal);
        Ok(Template { parts })
    }

    fn render(&self, data: &Map<String, Value>, html: bool) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(path) => {
                    let value = lookup(data, path);
                    if html {
                        escape_html(&value, &mut out);
                    } else {
                        out.push_str(&value);
                    }
                }
            }
        }
        out
    }
}

fn push_literal(parts: &mut Vec<Part>, literal: &str) {
    if !literal.is_empty() {
        parts.push(Part::Literal(literal.to_string()));
    }
}

/// The 1-based line of `rest[offset]` within `source`, for error messages.
fn line_of(source: &str, rest: &str, offset: usize) -> usize {
    let consumed = source.len() - rest.len() + offset;
    source[..consumed].matches('\n').count() + 1
}

/// The dotted path of a field reference, `None` for anything else.
fn parse_field(action: &str) -> Option<Vec<String>> {
    let path = action.strip_prefix('.')?;
    let segments: Vec<String> = path.split('.').map(str::to_string).collect();
    let valid =
        |s: &String| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    segments.iter().all(valid).then_some(segments)
}

fn lookup(data: &Map<String, Value>, path: &[String]) -> String {
    let Some((first, rest)) = path.split_first() else {
        return String::new();
    };
    let mut value = data.get(first);
    for segment in rest {
        value = value.and_then(|v| v.get(segment));
    }
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn escape_html(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => {
                let _ = out.write_char(c);
            }
        }
    }
}

/// Subject, plain text and HTML body (without the page around it) of a
/// built-in template.
fn builtin_source(template_type: &str) -> (&'static str, &'static str, &'static str) {
    match template_type {
        // The code comes before anything else that may hold digits (the
        // address, the minutes): tools and Kratos's own tests take the
        // first six-digit run of the body.
        "recovery_code_valid" => (
            "{{ .RecoveryCode }} is your account recovery code",
            "Hello,\n\n\
             Enter this code to recover your account:\n\n\
             {{ .RecoveryCode }}\n\n\
             We received a request to recover the account for {{ .To }}. \
             The code expires in {{ .ExpiresInMinutes }} minutes.\n\n\
             If you did not ask to recover your account, you can ignore this email. Nothing has changed.\n",
            "<p>Hello,</p>\n\
                 <p>Enter this code to recover your account:</p>\n\
                 <p style=\"font-size: 24px; font-weight: bold; letter-spacing: 4px;\">{{ .RecoveryCode }}</p>\n\
                 <p>We received a request to recover the account for {{ .To }}. \
                 The code expires in {{ .ExpiresInMinutes }} minutes.</p>\n\
                 <p>If you did not ask to recover your account, you can ignore this email. Nothing has changed.</p>\n",
        ),
        "login_code_valid" => (
            "{{ .LoginCode }} is your sign-in code",
            "Hello,\n\n\
             Enter this code to sign in:\n\n\
             {{ .LoginCode }}\n\n\
             We received a request to sign in to the account for {{ .To }}. \
             The code expires in {{ .ExpiresInMinutes }} minutes.\n\n\
             If you did not ask to sign in, you can ignore this email; nobody can sign in without the code.\n",
            "<p>Hello,</p>\n\
                 <p>Enter this code to sign in:</p>\n\
                 <p style=\"font-size: 24px; font-weight: bold; letter-spacing: 4px;\">{{ .LoginCode }}</p>\n\
                 <p>We received a request to sign in to the account for {{ .To }}. \
                 The code expires in {{ .ExpiresInMinutes }} minutes.</p>\n\
                 <p>If you did not ask to sign in, you can ignore this email; nobody can sign in without the code.</p>\n",
        ),
        "recovery_code_invalid" => (
            "Account recovery request",
            "Hello,\n\n\
             We received a request to recover an account for {{ .To }}, but no account uses this address.\n\n\
             If it was you, you may have signed up with a different email address; try that one instead.\n\
             If it was not you, you can ignore this email.\n",
            "<p>Hello,</p>\n\
                 <p>We received a request to recover an account for {{ .To }}, but no account uses this address.</p>\n\
                 <p>If it was you, you may have signed up with a different email address; try that one instead. \
                 If it was not you, you can ignore this email.</p>\n",
        ),
        "verification_code_valid" => (
            "{{ .VerificationCode }} is your verification code",
            "Hello,\n\n\
             Enter this code to confirm your email address:\n\n\
             {{ .VerificationCode }}\n\n\
             It confirms that {{ .To }} is yours. Or open this link: {{ .VerificationURL }}\n\n\
             The code expires in {{ .ExpiresInMinutes }} minutes.\n\n\
             If you did not ask for this code, you can ignore this email.\n",
            "<p>Hello,</p>\n\
                 <p>Enter this code to confirm your email address:</p>\n\
                 <p style=\"font-size: 24px; font-weight: bold; letter-spacing: 4px;\">{{ .VerificationCode }}</p>\n\
                 <p>It confirms that {{ .To }} is yours. Or <a href=\"{{ .VerificationURL }}\">open this link</a>.</p>\n\
                 <p>The code expires in {{ .ExpiresInMinutes }} minutes.</p>\n\
                 <p>If you did not ask for this code, you can ignore this email.</p>\n",
        ),
        "registration_code_valid" => (
            "{{ .RegistrationCode }} is your sign-up code",
            "Hello,\n\n\
             Enter this code to finish creating your account:\n\n\
             {{ .RegistrationCode }}\n\n\
             Someone, hopefully you, is signing up with {{ .To }}. \
             The code expires in {{ .ExpiresInMinutes }} minutes.\n\n\
             If you are not signing up, you can ignore this email. No account is made without the code.\n",
            "<p>Hello,</p>\n\
                 <p>Enter this code to finish creating your account:</p>\n\
                 <p style=\"font-size: 24px; font-weight: bold; letter-spacing: 4px;\">{{ .RegistrationCode }}</p>\n\
                 <p>Someone, hopefully you, is signing up with {{ .To }}. \
                 The code expires in {{ .ExpiresInMinutes }} minutes.</p>\n\
                 <p>If you are not signing up, you can ignore this email. No account is made without the code.</p>\n",
        ),
        "verification_code_invalid" => (
            "Email verification request",
            "Hello,\n\n\
             We received a request to verify {{ .To }}, but no account uses this address.\n\n\
             If it was you, you may have signed up with a different email address; try that one instead.\n\
             If it was not you, you can ignore this email.\n",
            "<p>Hello,</p>\n\
                 <p>We received a request to verify {{ .To }}, but no account uses this address.</p>\n\
                 <p>If it was you, you may have signed up with a different email address; try that one instead. \
                 If it was not you, you can ignore this email.</p>\n",
        ),
        // The notices below tell the owner that something happened to the
        // account. They carry no code and no link that signs in, so a
        // forwarded or leaked notice gives nobody access.
        "password_changed" => (
            "Your password was changed",
            "Hello,\n\n\
             The password of the account for {{ .To }} was changed.\n\n\
             When: {{ .OccurredAt }}\n\
             From: {{ .Device }}\n\n\
             If you made this change, there is nothing more to do.\n\
             If you did not, recover your account now to choose a new password, and review its settings.\n",
            "<p>Hello,</p>\n\
                 <p>The password of the account for {{ .To }} was changed.</p>\n\
                 <p>When: {{ .OccurredAt }}<br>From: {{ .Device }}</p>\n\
                 <p>If you made this change, there is nothing more to do. If you did not, recover your account \
                 now to choose a new password, and review its settings.</p>\n",
        ),
        "account_recovered" => (
            "Your account was recovered",
            "Hello,\n\n\
             The account for {{ .To }} was recovered: a one-time recovery code was used to sign in to it \
             without the password.\n\n\
             When: {{ .OccurredAt }}\n\
             From: {{ .Device }}\n\n\
             If this was you, there is nothing more to do.\n\
             If it was not, someone else may be able to read your email. Secure your email account first, \
             then recover your account again to choose a new password, and review its settings.\n",
            "<p>Hello,</p>\n\
                 <p>The account for {{ .To }} was recovered: a one-time recovery code was used to sign in to it \
                 without the password.</p>\n\
                 <p>When: {{ .OccurredAt }}<br>From: {{ .Device }}</p>\n\
                 <p>If this was you, there is nothing more to do. If it was not, someone else may be able to \
                 read your email. Secure your email account first, then recover your account again to choose \
                 a new password, and review its settings.</p>\n",
        ),
        "address_changed" => (
            "The email address of your account was changed",
            "Hello,\n\n\
             In the settings of your account, {{ .To }} was replaced by another email address. \
             This address will no longer receive messages about the account, such as recovery codes.\n\n\
             When: {{ .OccurredAt }}\n\
             From: {{ .Device }}\n\n\
             If you made this change, there is nothing more to do.\n\
             If you did not, someone else may be signed in to your account. This address can no longer \
             recover it, so contact our support right away.\n",
            "<p>Hello,</p>\n\
                 <p>In the settings of your account, {{ .To }} was replaced by another email address. \
                 This address will no longer receive messages about the account, such as recovery codes.</p>\n\
                 <p>When: {{ .OccurredAt }}<br>From: {{ .Device }}</p>\n\
                 <p>If you made this change, there is nothing more to do. If you did not, someone else may be \
                 signed in to your account. This address can no longer recover it, so contact our support \
                 right away.</p>\n",
        ),
        "address_removed" => (
            "An email address was removed from your account",
            "Hello,\n\n\
             In the settings of your account, {{ .To }} was removed. \
             This address will no longer receive messages about the account, such as recovery codes.\n\n\
             When: {{ .OccurredAt }}\n\
             From: {{ .Device }}\n\n\
             If you made this change, there is nothing more to do.\n\
             If you did not, someone else may be signed in to your account. This address can no longer \
             recover it, so contact our support right away.\n",
            "<p>Hello,</p>\n\
                 <p>In the settings of your account, {{ .To }} was removed. \
                 This address will no longer receive messages about the account, such as recovery codes.</p>\n\
                 <p>When: {{ .OccurredAt }}<br>From: {{ .Device }}</p>\n\
                 <p>If you made this change, there is nothing more to do. If you did not, someone else may be \
                 signed in to your account. This address can no longer recover it, so contact our support \
                 right away.</p>\n",
        ),
        other => unreachable!("no built-in template for `{other}`"),
    }
}

/// Wraps a built-in HTML body in a minimal document; the charset matters
/// because some clients otherwise guess Latin-1 for non-ASCII names.
fn html_page(body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"></head>\n\
         <body style=\"font-family: sans-serif; line-height: 1.5;\">\n{body}</body>\n</html>\n"
    )
}

impl latchkey_domain::courier::Renderer for Templates {
    fn render(
        &self,
        template_type: &str,
        data: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<latchkey_domain::courier::Rendered, latchkey_domain::courier::RenderError> {
        Templates::render(self, template_type, data).map_err(|e| latchkey_domain::courier::RenderError {
            template_type: template_type.to_string(),
            source: Box::new(e),
        })
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;
    use serde_json::json;

    /// The first run of six digits, as Kratos's tests and many tools read a code.
    fn first_six_digits(text: &str) -> Option<&str> {
        let bytes = text.as_bytes();
        (0..bytes.len().saturating_sub(5))
            .find(|&i| bytes[i..i + 6].iter().all(u8::is_ascii_digit))
            .map(|i| &text[i..i + 6])
    }

    #[test]
    fn the_code_comes_before_any_other_digits_in_code_mail() {
        let templates = Templates::builtin();
        for (template, key) in
            [("recovery_code_valid", "RecoveryCode"), ("verification_code_valid", "VerificationCode")]
        {
            let data = json!({
                "To": "user20261129@example.com",
                key: "042137",
                "ExpiresInMinutes": 123456,
                "VerificationURL": "http://127.0.0.1:4433/self-service/verification?flow=99999999&code=042137",
                "Identity": {"id": "00000000-0000-0000-0000-000000000000", "traits": {}},
            });
            let rendered = templates.render(template, data.as_object().unwrap()).unwrap();
            assert_eq!(first_six_digits(&rendered.text), Some("042137"), "{template}: {}", rendered.text);
            let html = rendered.html.unwrap();
            assert_eq!(first_six_digits(&html), Some("042137"), "{template}: {html}");
        }
    }

    #[test]
    fn configured_parts_replace_built_in_ones() {
        use base64::Engine;
        let subject = base64::engine::general_purpose::STANDARD.encode("Code {{ .RecoveryCode }} inside");
        let config =
            json!({"recovery_code": {"valid": {"email": {"subject": format!("base64://{subject}")}}}});
        let templates = Templates::builtin().with_config(&config).unwrap();
        let data = json!({"RecoveryCode": "123456", "To": "a@b.co"});
        let rendered = templates.render("recovery_code_valid", data.as_object().unwrap()).unwrap();
        assert_eq!(rendered.subject, "Code 123456 inside");
        assert!(rendered.text.contains("123456"), "the body stays built in");
        let unknown = json!({"carrier_pigeon": {"valid": {"email": {}}}});
        assert!(
            Templates::builtin().with_config(&unknown).unwrap_err().to_string().contains("carrier_pigeon")
        );
        let remote = json!({"recovery_code": {"valid": {"email": {"subject": "https://example.com/s"}}}});
        assert!(Templates::builtin().with_config(&remote).is_err());
    }

    #[test]
    fn latchkey_templates_are_configured_by_whole_name_or_group_and_variant() {
        use base64::Engine;
        let url = |text: &str| format!("base64://{}", base64::engine::general_purpose::STANDARD.encode(text));
        let config = json!({
            "account_recovered": {"email": {"subject": url("Recovered: {{ .To }}")}},
            "address": {"removed": {"email": {"body": {"plaintext": url("Gone: {{ .To }}")}}}},
            "password": {"changed": {"email": {"subject": url("New password")}}},
        });
        let templates = Templates::builtin().with_config(&config).unwrap();
        let data = json!({"To": "a@b.co"});
        let data = data.as_object().unwrap();
        assert_eq!(templates.render("account_recovered", data).unwrap().subject, "Recovered: a@b.co");
        assert_eq!(templates.render("address_removed", data).unwrap().text, "Gone: a@b.co");
        assert_eq!(templates.render("password_changed", data).unwrap().subject, "New password");
        let builtin = Templates::builtin();
        assert_eq!(templates.render("address_changed", data), builtin.render("address_changed", data));
        let broken = json!({"address_changed": {"email": {"subject": url("{{ if .To }}")}}});
        let err = Templates::builtin().with_config(&broken).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("courier.templates.address_changed.email.subject:"), "{text}");
        // The template's own syntax error stays the source, for the log.
        let source = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<SyntaxError>());
        assert!(matches!(source, Some(SyntaxError::NotAField { line: 1, .. })), "{err:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("test data must be an object"),
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("latchkey-courier-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn substitutes_fields_whitespace_tolerant() {
        let t = Template::compile("a{{.X}}b{{ .X }}c{{   .Y\t}}d{{ .Missing }}e").unwrap();
        let d = data(json!({"X": "1", "Y": 2}));
        assert_eq!(t.render(&d, false), "a1b1c2de");
    }

    #[test]
    fn nested_fields_and_trim_markers() {
        let t = Template::compile("Hi  {{- .Identity.traits.name -}}  !{{ .Identity.nope }}").unwrap();
        let d = data(json!({"Identity": {"traits": {"name": "Ada"}}}));
        assert_eq!(t.render(&d, false), "HiAda!");
    }

    #[test]
    fn rejects_unsupported_actions() {
        assert!(
            Template::compile("{{ if .X }}y{{ end }}")
                .unwrap_err()
                .to_string()
                .contains("only field references")
        );
        assert!(Template::compile("{{ .X | upper }}").is_err());
        assert!(Template::compile("line\n{{ .X").unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn html_escapes_values_but_text_does_not() {
        let templates = Templates::builtin();
        let d = data(json!({"To": "<b>\"a&b'</b>@example.com", "RecoveryCode": "123456"}));
        let r = templates.render("recovery_code_valid", &d).unwrap();
        let html = r.html.unwrap();
        assert!(html.contains("&lt;b&gt;&#34;a&amp;b&#39;&lt;/b&gt;@example.com"), "{html}");
        assert!(!html.contains("<b>"));
        assert!(r.text.contains("<b>\"a&b'</b>@example.com"));
    }

    #[test]
    fn builtin_templates_render_every_type() {
        let templates = Templates::builtin();
        let d = data(json!({
            "To": "ada@example.com", "RecoveryCode": "482913", "VerificationCode": "771203",
            "RegistrationCode": "305118", "LoginCode": "305117", "ExpiresInMinutes": 15
        }));
        for name in [
            "recovery_code_valid",
            "recovery_code_invalid",
            "verification_code_valid",
            "verification_code_invalid",
            "registration_code_valid",
            "login_code_valid",
            "password_changed",
            "account_recovered",
            "address_changed",
            "address_removed",
        ] {
            let r = templates.render(name, &d).unwrap();
            assert!(!r.subject.is_empty() && !r.subject.contains('\n'), "{name}");
            assert!(r.text.contains("ada@example.com"), "{name}");
            assert!(r.html.unwrap().contains("ada@example.com"), "{name}");
        }
        let r = templates.render("recovery_code_valid", &d).unwrap();
        assert!(r.subject.contains("482913") && r.text.contains("482913") && r.text.contains("15 minutes"));
        let r = templates.render("verification_code_valid", &d).unwrap();
        assert!(r.subject.contains("771203") && r.text.contains("771203"));
        let r = templates.render("registration_code_valid", &d).unwrap();
        assert!(r.subject.contains("305118") && r.text.contains("305118") && r.text.contains("15 minutes"));
        let r = templates.render("login_code_valid", &d).unwrap();
        assert!(r.subject.contains("305117") && r.text.contains("305117") && r.text.contains("15 minutes"));
        assert_eq!(templates.types().count(), 10);
        // Notices never show a code or a link, whatever data they are given.
        let d = data(json!({
            "To": "ada@example.com", "RecoveryCode": "482913", "VerificationCode": "771203",
            "VerificationURL": "https://id.example/verify?code=771203", "OccurredAt": "2030-01-02 03:04 UTC",
            "Device": "203.0.113.9"
        }));
        for name in ["password_changed", "account_recovered", "address_changed", "address_removed"] {
            let r = templates.render(name, &d).unwrap();
            let all = format!("{} {} {}", r.subject, r.text, r.html.unwrap());
            assert!(!all.contains("482913") && !all.contains("771203") && !all.contains("http"), "{name}");
            assert!(r.text.contains("2030-01-02 03:04 UTC") && r.text.contains("203.0.113.9"), "{name}");
        }
        assert_eq!(templates.render("nope", &d), Err(UnknownTemplate("nope".into())));
    }

    #[test]
    fn a_render_failure_through_the_port_keeps_its_cause() {
        use latchkey_domain::courier::Renderer;
        let err = Renderer::render(&Templates::builtin(), "nope", &Map::new()).unwrap_err();
        assert_eq!(err.template_type, "nope");
        assert_eq!(err.to_string(), "the nope email: unknown email template type `nope`");
        let source = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<UnknownTemplate>());
        assert_eq!(source, Some(&UnknownTemplate("nope".into())));
    }

    #[test]
    fn subject_is_folded_onto_one_line() {
        let t = Templates::builtin();
        let r = t.render("recovery_code_valid", &data(json!({"RecoveryCode": "1\r\nBcc: x@y"}))).unwrap();
        assert_eq!(r.subject, "1 Bcc: x@y is your account recovery code");
    }

    #[test]
    fn overrides_from_both_layouts_and_fallback() {
        let dir = temp_dir("overrides");
        // Latchkey's flat layout for one type ...
        std::fs::create_dir_all(dir.join("password_changed")).unwrap();
        std::fs::write(dir.join("password_changed").join(SUBJECT_FILE), "Changed for {{ .To }}").unwrap();
        // ... and Kratos's nested layout for another, body parts only.
        let kratos = dir.join("recovery_code").join("valid");
        std::fs::create_dir_all(&kratos).unwrap();
        std::fs::write(kratos.join(TEXT_FILE), "Code: {{ .RecoveryCode }}").unwrap();
        std::fs::write(kratos.join(HTML_FILE), "<i>{{ .RecoveryCode }}</i>").unwrap();

        let templates = Templates::load(Some(&dir)).unwrap();
        let d = data(json!({"To": "ada@example.com", "RecoveryCode": "<1>"}));

        let r = templates.render("password_changed", &d).unwrap();
        assert_eq!(r.subject, "Changed for ada@example.com");
        assert_eq!(r.text, Templates::builtin().render("password_changed", &d).unwrap().text);

        let r = templates.render("recovery_code_valid", &d).unwrap();
        assert_eq!(r.text, "Code: <1>");
        assert_eq!(r.html.as_deref(), Some("<i>&lt;1&gt;</i>"));
        assert_eq!(r.subject, "<1> is your account recovery code");

        let builtin = Templates::builtin();
        for name in ["recovery_code_invalid", "verification_code_valid", "verification_code_invalid"] {
            assert_eq!(templates.render(name, &d).unwrap(), builtin.render(name, &d).unwrap());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flat_layout_wins_over_kratos_layout() {
        let dir = temp_dir("precedence");
        for sub in ["verification_code_valid", "verification_code/valid"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            std::fs::write(dir.join(sub).join(SUBJECT_FILE), format!("{sub} {{{{ .VerificationCode }}}}"))
                .unwrap();
        }
        let r = Templates::load(Some(&dir))
            .unwrap()
            .render("verification_code_valid", &data(json!({"VerificationCode": "9"})))
            .unwrap();
        assert_eq!(r.subject, "verification_code_valid 9");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_errors_name_the_problem() {
        assert!(Templates::load(None).is_ok());
        let missing = std::env::temp_dir().join("latchkey-courier-does-not-exist");
        assert!(Templates::load(Some(&missing)).unwrap_err().to_string().contains("not a directory"));

        let dir = temp_dir("broken");
        std::fs::create_dir_all(dir.join("recovery_code/invalid")).unwrap();
        std::fs::write(dir.join("recovery_code/invalid").join(TEXT_FILE), "{{ range .X }}").unwrap();
        let err = Templates::load(Some(&dir)).unwrap_err();
        assert!(matches!(err, TemplateError::Syntax { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains(TEXT_FILE) && err.contains("only field references"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
