//! The pages' languages: which one a request gets (`Accept-Language`), the
//! pages' own wording, and flow messages by their Kratos id. A message id
//! without a translation keeps the text the flow carries (English).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    /// The `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else if primary.eq_ignore_ascii_case("de") {
            Some(Lang::De)
        } else {
            None
        }
    }

    /// The language the client ranks highest among those we have; English
    /// when it names none of them (or sends no header).
    pub fn negotiate(headers: &HeaderMap) -> Lang {
        let Some(accept) = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()) else {
            return Lang::En;
        };
        let mut ranked: Vec<(&str, f32)> = accept
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';').map(str::trim);
                let tag = pieces.next().filter(|t| !t.is_empty())?;
                let q = pieces.find_map(|p| p.strip_prefix("q=")).and_then(|q| q.parse().ok()).unwrap_or(1.0);
                Some((tag, q))
            })
            .filter(|(_, q)| *q > 0.0)
            .collect();
        // Stable, so equal weights keep the client's order.
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.iter().find_map(|(tag, _)| Lang::from_tag(tag)).unwrap_or(Lang::En)
    }

    /// The pages' own wording, by key, for the templates' `t`.
    pub fn chrome(self) -> BTreeMap<&'static str, &'static str> {
        let table = match self {
            Lang::En => CHROME_EN,
            Lang::De => CHROME_DE,
        };
        table.iter().copied().collect()
    }

    /// The page title of a flow's page, or a group's heading.
    pub fn word(self, key: &str) -> Option<&'static str> {
        let table = match self {
            Lang::En => CHROME_EN,
            Lang::De => CHROME_DE,
        };
        table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// A flow message (`{id, text, type, context}`) in this language: the
    /// translation of its id with `{key}` filled from its context, or the
    /// flow's own text when there is no translation or a key is missing.
    pub fn message(self, message: &Value) -> String {
        let own = message.get("text").and_then(Value::as_str).unwrap_or_default();
        let translated = match self {
            Lang::En => None,
            Lang::De => message.get("id").and_then(Value::as_u64).and_then(|id| {
                MESSAGES_DE.iter().find(|(known, _)| u64::from(*known) == id).map(|(_, text)| *text)
            }),
        };
        translated.and_then(|text| fill(text, message.get("context"))).unwrap_or_else(|| own.to_string())
    }
}

/// `text` with each `{key}` replaced by the context's value, or `None`
/// when the context lacks one.
fn fill(text: &str, context: Option<&Value>) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        let value = context?.get(&rest[start + 1..end])?;
        match value {
            Value::String(s) => out.push_str(s),
            Value::Number(n) => out.push_str(&n.to_string()),
            _ => return None,
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

const CHROME_EN: &[(&str, &str)] = &[
    ("app_name", "Latchkey"),
    ("title_login", "Sign in"),
    ("title_registration", "Create an account"),
    ("title_recovery", "Recover your account"),
    ("title_verification", "Verify your email address"),
    ("title_settings", "Account settings"),
    ("title_error", "Something went wrong"),
    ("title_welcome", "Your account"),
    ("title_mail", "Outbox (development only)"),
    ("group_password", "Password"),
    ("group_profile", "Profile"),
    ("group_code", "Code"),
    ("group_link", "Link"),
    ("group_totp", "Authenticator app"),
    ("group_lookup_secret", "Backup recovery codes"),
    ("link_registration", "No account yet? Create one"),
    ("link_login", "Already have an account? Sign in"),
    ("link_recovery", "Forgot your password?"),
    ("link_back_to_login", "Back to sign in"),
    ("link_welcome", "Back to your account"),
    ("link_settings", "Account settings"),
    ("link_verification", "Verify an email address"),
    ("link_logout", "Sign out"),
    ("link_start_again", "Start again"),
    ("signed_out", "You are not signed in."),
    ("signed_in_as", "You are signed in as"),
    ("session", "Session"),
    ("identity", "Account ID"),
    ("authenticated_at", "Signed in at"),
    ("expires_at", "Session expires at"),
    ("methods", "Signed in with"),
    ("aal", "Assurance level"),
    ("addresses", "Email addresses"),
    ("verified", "verified"),
    ("unverified", "not verified"),
    ("session_json", "The session as the API returns it"),
    ("error_generic", "The request could not be completed. Please start again."),
    ("error_reference", "Error reference"),
    ("mail_intro", "Messages the courier queued or sent, newest first. This page exists only with --dev."),
    ("mail_recipient", "Recipient"),
    ("mail_subject", "Subject"),
    ("mail_status", "Status"),
    ("mail_time", "Queued at"),
    ("mail_template", "Template"),
    ("mail_empty", "No messages yet."),
    ("mail_all", "All messages"),
    ("mail_body", "Text body"),
];

const CHROME_DE: &[(&str, &str)] = &[
    ("app_name", "Latchkey"),
    ("title_login", "Anmelden"),
    ("title_registration", "Konto erstellen"),
    ("title_recovery", "Konto wiederherstellen"),
    ("title_verification", "E-Mail-Adresse bestätigen"),
    ("title_settings", "Kontoeinstellungen"),
    ("title_error", "Etwas ist schiefgelaufen"),
    ("title_welcome", "Ihr Konto"),
    ("title_mail", "Postausgang (nur Entwicklung)"),
    ("group_password", "Passwort"),
    ("group_profile", "Profil"),
    ("group_code", "Code"),
    ("group_link", "Link"),
    ("group_totp", "Authentifizierungs-App"),
    ("group_lookup_secret", "Backup-Wiederherstellungscodes"),
    ("link_registration", "Noch kein Konto? Jetzt erstellen"),
    ("link_login", "Schon ein Konto? Anmelden"),
    ("link_recovery", "Passwort vergessen?"),
    ("link_back_to_login", "Zurück zur Anmeldung"),
    ("link_welcome", "Zurück zu Ihrem Konto"),
    ("link_settings", "Kontoeinstellungen"),
    ("link_verification", "Eine E-Mail-Adresse bestätigen"),
    ("link_logout", "Abmelden"),
    ("link_start_again", "Neu beginnen"),
    ("signed_out", "Sie sind nicht angemeldet."),
    ("signed_in_as", "Sie sind angemeldet als"),
    ("session", "Sitzung"),
    ("identity", "Konto-ID"),
    ("authenticated_at", "Angemeldet am"),
    ("expires_at", "Sitzung läuft ab am"),
    ("methods", "Angemeldet mit"),
    ("aal", "Sicherheitsstufe"),
    ("addresses", "E-Mail-Adressen"),
    ("verified", "bestätigt"),
    ("unverified", "nicht bestätigt"),
    ("session_json", "Die Sitzung, wie die API sie liefert"),
    ("error_generic", "Die Anfrage konnte nicht abgeschlossen werden. Bitte beginnen Sie neu."),
    ("error_reference", "Fehlerkennung"),
    (
        "mail_intro",
        "Nachrichten, die der Versand eingereiht oder verschickt hat, die neueste zuerst. Diese Seite gibt es nur mit --dev.",
    ),
    ("mail_recipient", "Empfänger"),
    ("mail_subject", "Betreff"),
    ("mail_status", "Status"),
    ("mail_time", "Eingereiht am"),
    ("mail_template", "Vorlage"),
    ("mail_empty", "Noch keine Nachrichten."),
    ("mail_all", "Alle Nachrichten"),
    ("mail_body", "Textinhalt"),
];

/// German texts of the message ids Latchkey sends. Ids whose English text
/// is data (a schema title, a validation reason) are left out on purpose.
const MESSAGES_DE: &[(u32, &str)] = &[
    (1010003, "Bitte bestätigen Sie diese Aktion, indem Sie nachweisen, dass Sie es sind."),
    (1010022, "Mit Passwort anmelden"),
    (1040001, "Registrieren"),
    (1040003, "Weiter"),
    (1040008, "Zurück"),
    (1040009, "Bitte wählen Sie, womit Sie sich künftig anmelden möchten."),
    (1050001, "Ihre Änderungen wurden gespeichert."),
    (1050004, "Authentifizierungs-App entfernen"),
    (1050005, "QR-Code für Ihre Authentifizierungs-App"),
    (1050007, "Backup-Wiederherstellungscodes anzeigen"),
    (1050008, "Neue Backup-Wiederherstellungscodes erstellen"),
    (1050010, "Ihre Backup-Wiederherstellungscodes. Bewahren Sie sie sicher auf: Jeder Code gilt einmal."),
    (1050011, "Diese Backup-Wiederherstellungscodes speichern"),
    (1050016, "Backup-Wiederherstellungscodes abschalten"),
    (1050017, "Der Schlüssel für Ihre Authentifizierungs-App, falls Sie den QR-Code nicht scannen können."),
    (1060001, "Sie haben Ihr Konto wiederhergestellt. Bitte ändern Sie jetzt Ihr Passwort."),
    (
        1060003,
        "Falls diese Adresse zu einem Konto gehört, ist eine E-Mail mit einem Wiederherstellungscode unterwegs. Geben Sie den Code unten ein.",
    ),
    (1070001, "Passwort"),
    (1070003, "Speichern"),
    (1070004, "Kennung"),
    (1070006, "Code bestätigen"),
    (1070007, "E-Mail"),
    (1070008, "Code erneut senden"),
    (1070009, "Weiter"),
    (1070010, "Wiederherstellungscode"),
    (1070011, "Bestätigungscode"),
    (1080002, "Ihre E-Mail-Adresse ist jetzt bestätigt."),
    (
        1080003,
        "Falls diese Adresse zu einem Konto gehört, ist eine E-Mail mit einem Bestätigungscode unterwegs. Geben Sie den Code unten ein.",
    ),
    (4000002, "Das Feld {property} fehlt."),
    (4000006, "Kennung oder Passwort sind falsch. Bitte prüfen Sie beides und versuchen Sie es erneut."),
    (4000007, "Es gibt bereits ein Konto mit dieser Kennung (E-Mail, Telefon, Benutzername, …)."),
    (4000008, "Dieser Authentifizierungscode stimmt nicht. Bitte versuchen Sie es erneut."),
    (4000009, "Es wurden keine Anmeldekennungen gefunden. Wurden sie vergessen?"),
    (4000010, "Dieses Konto ist noch nicht aktiv: Bitte bestätigen Sie zuerst Ihre E-Mail-Adresse."),
    (4000017, "Der Wert ist {actual_length} Zeichen lang; erlaubt sind höchstens {max_length}."),
    (4000031, "Wählen Sie ein Passwort, das Ihrer E-Mail-Adresse oder Ihrem Benutzernamen nicht ähnelt."),
    (
        4000032,
        "Wählen Sie ein längeres Passwort: Es braucht mindestens {min_length} Zeichen, dieses hat {actual_length}.",
    ),
    (
        4000033,
        "Wählen Sie ein kürzeres Passwort: Es darf höchstens {max_length} Bytes belegen, dieses belegt {actual_length} (Zeichen außerhalb des lateinischen Grundalphabets belegen mehr als ein Byte).",
    ),
    (4000034, "Wählen Sie ein anderes Passwort: Dieses gehört zu den häufigsten Passwörtern aus Datenlecks."),
    (4000040, "Bitte geben Sie eine gültige E-Mail-Adresse ein."),
    (4010001, "Dieses Formular ist abgelaufen; bitte versuchen Sie es erneut."),
    (4010002, "Keine Anmeldemethode passt zu dieser Anfrage. Haben Sie das Formular richtig ausgefüllt?"),
    (
        4010003,
        "Keine Registrierungsmethode passt zu dieser Anfrage. Haben Sie das Formular richtig ausgefüllt?",
    ),
    (
        4010004,
        "Keine Einstellungsmethode passt zu dieser Anfrage. Haben Sie das Formular richtig ausgefüllt?",
    ),
    (
        4010005,
        "Keine Wiederherstellungsmethode passt zu dieser Anfrage. Haben Sie das Formular richtig ausgefüllt?",
    ),
    (
        4010006,
        "Keine Bestätigungsmethode passt zu dieser Anfrage. Haben Sie das Formular richtig ausgefüllt?",
    ),
    (4010011, "Dieses Konto ist deaktiviert."),
    (
        4019001,
        "Zu viele fehlgeschlagene Anmeldeversuche. Bitte warten Sie {retry_after_seconds} Sekunden, bevor Sie es erneut versuchen.",
    ),
    (4040001, "Dieses Formular ist abgelaufen; bitte versuchen Sie es erneut."),
    (4050001, "Dieses Formular ist abgelaufen; bitte versuchen Sie es erneut."),
    (4060005, "Dieses Formular ist abgelaufen; bitte versuchen Sie es erneut."),
    (
        4060006,
        "Der Wiederherstellungscode ist ungültig oder wurde bereits verwendet. Bitte versuchen Sie es erneut.",
    ),
    (4070002, "Diese Adresse wurde mit diesem Formular bereits bestätigt; hier ist nichts mehr zu tun."),
    (4070005, "Dieses Formular ist abgelaufen; bitte versuchen Sie es erneut."),
    (
        4070006,
        "Der Bestätigungscode ist ungültig oder wurde bereits verwendet. Bitte versuchen Sie es erneut.",
    ),
];

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn with(accept: &str) -> Lang {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_str(accept).unwrap());
        Lang::negotiate(&headers)
    }

    #[test]
    fn the_client_s_highest_ranked_known_language_wins() {
        assert_eq!(Lang::negotiate(&HeaderMap::new()), Lang::En);
        assert_eq!(with("de-DE,de;q=0.9,en;q=0.8"), Lang::De);
        assert_eq!(with("fr-FR, de;q=0.5, en;q=0.4"), Lang::De);
        assert_eq!(with("en;q=0.2, de;q=0.7"), Lang::De);
        assert_eq!(with("de;q=0, en"), Lang::En);
        assert_eq!(with("fr, *"), Lang::En);
        assert_eq!(with("DE-at"), Lang::De);
    }

    #[test]
    fn messages_are_translated_by_id_with_their_context() {
        let short = json!({"id": 4000032, "text": "Choose a longer password", "type": "error",
            "context": {"min_length": 8, "actual_length": 5}});
        assert_eq!(Lang::En.message(&short), "Choose a longer password");
        assert_eq!(
            Lang::De.message(&short),
            "Wählen Sie ein längeres Passwort: Es braucht mindestens 8 Zeichen, dieses hat 5."
        );
        // A context key missing, or an id without a translation: the flow's own text.
        let bare = json!({"id": 4000032, "text": "own text", "type": "error"});
        assert_eq!(Lang::De.message(&bare), "own text");
        let title = json!({"id": 1070002, "text": "E-Mail", "type": "info", "context": {"title": "E-Mail"}});
        assert_eq!(Lang::De.message(&title), "E-Mail");
    }

    #[test]
    fn both_languages_word_every_page_string() {
        let en: Vec<_> = Lang::En.chrome().into_keys().collect();
        let de: Vec<_> = Lang::De.chrome().into_keys().collect();
        assert_eq!(en, de);
        assert_eq!(en.len(), CHROME_EN.len(), "no key twice");
    }

    #[test]
    fn every_german_placeholder_is_closed() {
        for (id, text) in MESSAGES_DE {
            assert_eq!(text.matches('{').count(), text.matches('}').count(), "{id}");
        }
    }
}
