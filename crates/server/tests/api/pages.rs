//! The built-in pages (`ui.enabled`) driven as a browser without JavaScript
//! drives them: GET a page (following redirects, keeping cookies), read its
//! form, fill it, POST it where the form says, follow the answer. And the
//! `--dev` mail viewer, present only with `--dev`.

use std::collections::BTreeMap;

use latchkey::config::{Config, RegistrationStyle};

use crate::helpers::{Backend, Jar, PASSWORD, TestApp, create_identity, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    registration_welcome_logout_and_login,
    registration_in_two_steps_goes_back_and_on,
    an_expired_flow_starts_a_new_one,
    a_wrong_password_shows_its_message_on_the_page,
    german_by_accept_language,
    a_page_without_its_csrf_cookie_shows_the_error,
    the_dev_mail_viewer_shows_the_code_with_dev_only,
    second_factors_show_on_the_settings_page,
    sign_up_by_code_on_the_pages,
    passwordless_code_login_on_the_pages,
);

/// Pages on, and every UI URL and the return URL left to their defaults.
fn pages_on(c: &mut Config) {
    c.ui.enabled = true;
    let ss = &mut c.selfservice;
    ss.default_browser_return_url.clear();
    ss.allowed_return_urls.clear();
    ss.flows.login.ui_url.clear();
    ss.flows.registration.ui_url.clear();
}

struct Page {
    url: String,
    status: u16,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Page {
    fn has(&self, needle: &str) -> bool {
        self.html.contains(needle)
    }

    /// The `<form id=…>`: where it posts and the fields it sends, with
    /// its buttons kept apart (only the one clicked is sent).
    fn form(&self, id: &str) -> Form {
        let start = self
            .html
            .find(&format!("<form id=\"{id}\""))
            .unwrap_or_else(|| panic!("no form {id} in {}", self.html));
        let end = start + self.html[start..].find("</form>").unwrap();
        let body = &self.html[start..end];
        let attrs = attributes(body);
        let mut form = Form { action: attrs["action"].clone(), fields: Vec::new(), buttons: BTreeMap::new() };
        for (index, _) in body.match_indices('<') {
            let tag = &body[index..];
            if tag.starts_with("<input ") {
                let a = attributes(tag);
                if a.get("type").map(String::as_str) == Some("checkbox") && !a.contains_key("checked") {
                    continue;
                }
                form.fields.push((a["name"].clone(), a.get("value").cloned().unwrap_or_default()));
            } else if tag.starts_with("<button ") {
                let a = attributes(tag);
                form.buttons.insert(
                    a["id"].clone(),
                    (a["name"].clone(), a.get("value").cloned().unwrap_or_default()),
                );
            }
        }
        form
    }
}

struct Form {
    action: String,
    fields: Vec<(String, String)>,
    buttons: BTreeMap<String, (String, String)>,
}

/// The attributes of the tag `tag` starts with, entities decoded.
fn attributes(tag: &str) -> BTreeMap<String, String> {
    let end = tag.find('>').unwrap();
    let mut rest = tag[..end].split_once(' ').map_or("", |(_, r)| r);
    let mut out = BTreeMap::new();
    while !rest.trim_start().is_empty() {
        rest = rest.trim_start();
        let name_end = rest.find(['=', ' ']).unwrap_or(rest.len());
        let name = rest[..name_end].to_string();
        rest = &rest[name_end..];
        if let Some(quoted) = rest.strip_prefix("=\"") {
            let close = quoted.find('"').unwrap();
            out.insert(name, unescape(&quoted[..close]));
            rest = &quoted[close + 1..];
        } else {
            out.insert(name, String::new());
        }
    }
    out
}

fn unescape(text: &str) -> String {
    text.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A browser: a cookie jar, a language, redirects followed by hand.
struct Browser<'a> {
    app: &'a TestApp,
    jar: Jar,
    language: &'static str,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp, language: &'static str) -> Self {
        Browser { app, jar: Jar::default(), language }
    }

    async fn open(&mut self, path: &str) -> Page {
        let url = if path.starts_with("http") { path.to_string() } else { self.app.public_path(path) };
        let request = self.app.http.get(&url);
        self.follow(request, url).await
    }

    /// Fills `values` in, clicks `button`, follows where that leads.
    async fn submit(&mut self, page: &Page, form: &str, values: &[(&str, &str)], button: &str) -> Page {
        let form = page.form(form);
        let mut fields = form.fields.clone();
        for (name, value) in values {
            match fields.iter_mut().find(|(n, _)| n == name) {
                Some(field) => field.1 = value.to_string(),
                None => panic!("the form has no field {name}"),
            }
        }
        fields.push(
            form.buttons
                .get(button)
                .unwrap_or_else(|| panic!("no button {button} in {:?}", form.buttons))
                .clone(),
        );
        let request = self.app.http.post(&form.action).form(&fields);
        self.follow(request, form.action.clone()).await
    }

    async fn follow(&mut self, mut request: reqwest::RequestBuilder, mut url: String) -> Page {
        for _ in 0..10 {
            let response = request
                .header("cookie", self.jar.header())
                .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
                .header("accept-language", self.language)
                .send()
                .await
                .unwrap();
            self.jar.store(&response);
            if response.status().is_redirection() {
                let location = response.headers()["location"].to_str().unwrap().to_string();
                assert!(location.starts_with("http"), "absolute redirects only: {location}");
                url = location;
                request = self.app.http.get(&url);
                continue;
            }
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let html = response.text().await.unwrap();
            return Page { url, status, headers, html };
        }
        panic!("a redirect loop at {url}");
    }
}

/// What every page must send and be: protected, labelled, in a language.
fn assert_a_good_page(page: &Page, lang: &str) {
    assert_eq!(page.status, 200, "{}: {}", page.url, page.html);
    let header =
        |name: &str| page.headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert!(header("content-type").starts_with("text/html"));
    assert!(header("cache-control").contains("no-store"));
    assert_eq!(header("x-frame-options"), "DENY");
    let csp = header("content-security-policy");
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("script-src")
    );
    assert!(!page.has("<script") && !page.has("style=\""), "no inline scripts or styles");
    assert!(page.has(&format!("<html lang=\"{lang}\">")));
    assert!(page.has("name=\"viewport\""));
    for (index, _) in page.html.match_indices("<input ") {
        let a = attributes(&page.html[index..]);
        if a.get("type").map(String::as_str) != Some("hidden") {
            let id = &a["id"];
            assert!(page.has(&format!("<label for=\"{id}\"")), "input {id} has a label");
        }
    }
}

async fn registration_welcome_logout_and_login(backend: Backend) {
    let app = spawn_app_with(backend, pages_on).await;
    let mut browser = Browser::new(&app, "en-GB,en;q=0.9");

    // No flow in the URL: the page starts one and shows it.
    let page = browser.open("/ui/registration").await;
    assert!(page.url.contains("/ui/registration?flow="), "{}", page.url);
    assert_a_good_page(&page, "en");
    assert!(page.has("data-testid=\"page-registration\"") && page.has("name=\"csrf_token\""));
    // A field's error is tied to it, and takes the focus.
    let short = browser
        .submit(
            &page,
            "form-main",
            &[("traits.email", "page@example.com"), ("password", "short")],
            "submit-password",
        )
        .await;
    assert_a_good_page(&short, "en");
    assert!(short.has("data-testid=\"message-4000032\""), "{}", short.html);
    let password = attributes(&short.html[short.html.find("<input id=\"input-password\"").unwrap()..]);
    assert_eq!(password["aria-describedby"], "input-password-messages");
    assert!(password.contains_key("autofocus") && password["aria-invalid"] == "true");
    assert!(short.has("<div id=\"input-password-messages\""));
    let welcome = browser
        .submit(
            &short,
            "form-main",
            &[("traits.email", "page@example.com"), ("password", PASSWORD)],
            "submit-password",
        )
        .await;
    assert!(welcome.url.ends_with("/ui/welcome"), "{}", welcome.url);
    assert_a_good_page(&welcome, "en");
    assert!(welcome.has("data-testid=\"welcome-signed-in\"") && welcome.has("page@example.com"));
    let logout =
        attributes(&welcome.html[welcome.html.find("<a id=\"logout-link\"").unwrap()..])["href"].clone();

    let signed_out = browser.open(&logout).await;
    assert!(signed_out.has("data-testid=\"welcome-signed-out\""), "{}", signed_out.html);

    let login = browser.open("/ui/login").await;
    assert_a_good_page(&login, "en");
    assert!(login.has("id=\"link-registration\"") && login.has("id=\"link-recovery\""));
    let back = browser
        .submit(
            &login,
            "form-main",
            &[("identifier", "page@example.com"), ("password", PASSWORD)],
            "submit-password",
        )
        .await;
    assert!(back.has("data-testid=\"welcome-signed-in\"") && back.has("page@example.com"));

    // Signed in, settings shows one form per method.
    let settings = browser.open("/ui/settings").await;
    assert_a_good_page(&settings, "en");
    assert!(settings.has("id=\"form-profile\"") && settings.has("id=\"form-password\""));
    // The profile form sends no password, so its own required field cannot block it.
    assert!(!settings.form("form-profile").fields.iter().any(|(name, _)| name == "password"));
    let saved =
        browser.submit(&settings, "form-profile", &[("traits.name.first", "Ada")], "submit-profile").await;
    assert!(saved.has("data-testid=\"message-1050001\"") && saved.has("value=\"Ada\""), "{}", saved.html);
    app.stop().await;
}

async fn registration_in_two_steps_goes_back_and_on(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        pages_on(c);
        c.selfservice.flows.registration.style = RegistrationStyle::ProfileFirst;
    })
    .await;
    let mut browser = Browser::new(&app, "en");
    let first = browser.open("/ui/registration").await;
    assert_a_good_page(&first, "en");
    assert!(!first.has("name=\"password\""), "traits first");
    let second =
        browser.submit(&first, "form-main", &[("traits.email", "two@example.com")], "submit-profile").await;
    assert_a_good_page(&second, "en");
    assert!(second.has("data-testid=\"message-1040009\""), "{}", second.html);
    // Back is a form of its own, carrying the traits and its method.
    let back_form = second.form("form-profile-screen");
    assert!(back_form.fields.contains(&("method".to_string(), "profile".to_string())));
    assert!(back_form.fields.contains(&("traits.email".to_string(), "two@example.com".to_string())));
    let again = browser.submit(&second, "form-profile-screen", &[], "submit-screen").await;
    assert!(again.has("value=\"two@example.com\"") && !again.has("name=\"password\""), "{}", again.html);
    let second = browser.submit(&again, "form-main", &[], "submit-profile").await;
    let welcome =
        browser.submit(&second, "form-password", &[("password", PASSWORD)], "submit-password").await;
    assert!(
        welcome.has("data-testid=\"welcome-signed-in\"") && welcome.has("two@example.com"),
        "{}",
        welcome.html
    );
    app.stop().await;
}

async fn an_expired_flow_starts_a_new_one(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        pages_on(c);
        c.selfservice.flows.login.lifespan = "1s".parse().unwrap();
    })
    .await;
    let mut browser = Browser::new(&app, "en");
    let first = browser.open("/ui/login").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fresh = browser.open(&first.url).await;
    assert_a_good_page(&fresh, "en");
    assert!(fresh.url.contains("/ui/login?flow=") && fresh.url != first.url, "{}", fresh.url);
    app.stop().await;
}

async fn a_wrong_password_shows_its_message_on_the_page(backend: Backend) {
    let app = spawn_app_with(backend, pages_on).await;
    create_identity(&app, "wrong@example.com").await;
    let mut browser = Browser::new(&app, "en");
    let login = browser.open("/ui/login").await;
    let again = browser
        .submit(
            &login,
            "form-main",
            &[("identifier", "wrong@example.com"), ("password", "not-the-password")],
            "submit-password",
        )
        .await;
    assert_a_good_page(&again, "en");
    assert_eq!(login.url, again.url, "the same flow, shown again");
    assert!(again.has("data-testid=\"message-4000006\""), "{}", again.html);
    assert!(again.has("The identifier or password is incorrect"));
    assert!(again.has("value=\"wrong@example.com\""), "the identifier is kept");
    app.stop().await;
}

async fn german_by_accept_language(backend: Backend) {
    let app = spawn_app_with(backend, pages_on).await;
    create_identity(&app, "de@example.com").await;
    let mut browser = Browser::new(&app, "fr-CH, de;q=0.8, en;q=0.5");
    let login = browser.open("/ui/login").await;
    assert_a_good_page(&login, "de");
    assert!(login.has("<h1 id=\"page-title\">Anmelden</h1>") && login.has(">Passwort<"));
    assert!(login.has(">Mit Passwort anmelden</button>"));
    let again = browser
        .submit(
            &login,
            "form-main",
            &[("identifier", "de@example.com"), ("password", "falsch-falsch")],
            "submit-password",
        )
        .await;
    assert!(again.has("Kennung oder Passwort sind falsch."), "{}", again.html);
    app.stop().await;
}

async fn a_page_without_its_csrf_cookie_shows_the_error(backend: Backend) {
    let app = spawn_app_with(backend, pages_on).await;
    let mut browser = Browser::new(&app, "en");
    let login = browser.open("/ui/login").await;
    let mut stranger = Browser::new(&app, "en");
    let error = stranger.open(&login.url).await;
    assert_eq!(error.status, 403);
    assert!(
        error.has("data-testid=\"page-error\"") && error.has("data-error-id=\"security_csrf_violation\"")
    );
    assert!(error.has("id=\"link-start-again\""));
    // A form posted from a browser that lost the cookie goes to the error
    // UI, which shows the stored error.
    let posted = stranger
        .submit(
            &login,
            "form-main",
            &[("identifier", "x@example.com"), ("password", "whatever")],
            "submit-password",
        )
        .await;
    assert!(posted.url.contains("/ui/error?id="), "{}", posted.url);
    assert_eq!(posted.status, 200);
    assert!(posted.has("data-error-id=\"security_csrf_violation\""), "{}", posted.html);
    let stub = browser.open("/ui/error?id=stub:500").await;
    assert!(stub.has("This is a stub error."), "{}", stub.html);
    // An id that names nothing still gives a page, with the id escaped.
    let shown = browser.open("/ui/error?id=a-reference%3Cb%3E").await;
    assert_a_good_page(&shown, "en");
    assert!(shown.has("data-testid=\"error-id\">a-reference&lt;b&gt;<"), "escaped: {}", shown.html);
    app.stop().await;
}

async fn the_dev_mail_viewer_shows_the_code_with_dev_only(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        pages_on(c);
        c.selfservice.flows.recovery.enabled = true;
    })
    .await;
    create_identity(&app, "mail@example.com").await;
    let mut browser = Browser::new(&app, "en");
    let recovery = browser.open("/ui/recovery").await;
    assert_a_good_page(&recovery, "en");
    let sent = browser.submit(&recovery, "form-main", &[("email", "mail@example.com")], "submit-code").await;
    assert!(sent.has("data-testid=\"message-1060003\""), "{}", sent.html);
    assert!(sent.has("id=\"form-code-email\""), "resending is its own form");

    app.code_requests_served().await;
    let list = browser.open("/ui/dev/mail").await;
    assert_a_good_page(&list, "en");
    assert!(list.has("data-testid=\"mail-row\"") && list.has("mail@example.com"));
    let link =
        attributes(&list.html[list.html.find("<a data-testid=\"mail-link\"").unwrap()..])["href"].clone();
    let message = browser.open(&link).await;
    assert_a_good_page(&message, "en");
    let body_at = message.html.find("<pre id=\"mail-body\"").unwrap();
    let code: String = message.html[body_at..].chars().skip_while(|c| !c.is_ascii_digit()).take(6).collect();
    assert_eq!(code.len(), 6, "{}", message.html);
    let code_form = browser.submit(&sent, "form-main", &[("code", &code)], "submit-code").await;
    assert!(code_form.url.contains("/ui/settings?flow="), "recovered: {}", code_form.url);
    assert!(code_form.has("data-testid=\"message-1060001\""));
    app.stop().await;

    let production = spawn_app_with(backend, |c| {
        pages_on(c);
        c.dev = false;
    })
    .await;
    let missing = production.http.get(production.public_path("/ui/dev/mail")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let pages = production.http.get(production.public_path("/ui/welcome")).send().await.unwrap();
    assert_eq!(pages.status(), 200, "the pages themselves stay");
    production.stop().await;
}

/// The text inside the first `<code>` after `marker`.
fn code_after(page: &Page, marker: &str) -> String {
    let start = page.html.find(marker).unwrap_or_else(|| panic!("no {marker} in {}", page.html));
    let rest = &page.html[start..];
    let open = rest.find("<code>").unwrap() + "<code>".len();
    rest[open..open + rest[open..].find("</code>").unwrap()].to_string()
}

/// The TOTP and lookup-secret nodes (an image, texts, lone buttons) render
/// with no page code of their own, and work without JavaScript.
async fn second_factors_show_on_the_settings_page(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        pages_on(c);
        c.selfservice.methods.totp.enabled = true;
        c.selfservice.methods.lookup_secret.enabled = true;
        c.secrets.cipher = vec!["0123456789abcdef0123456789abcdef".into()];
    })
    .await;
    let mut browser = Browser::new(&app, "en");
    let page = browser.open("/ui/registration").await;
    let values = [("traits.email", "factors@example.com"), ("password", PASSWORD)];
    let welcome = browser.submit(&page, "form-main", &values, "submit-password").await;
    assert!(welcome.has("data-testid=\"welcome-signed-in\""));

    let settings = browser.open("/ui/settings").await;
    assert_a_good_page(&settings, "en");
    let csp = settings.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("img-src 'self'") && csp.contains(" data:;"), "{csp}");
    assert!(settings.has("id=\"form-totp\"") && settings.has(">Authenticator app</h2>"));
    assert!(settings.has(">Backup recovery codes</h2>"), "a group of lone buttons is headed too");
    let img = &settings.html[settings.html.find("<img id=\"image-totp_qr\"").unwrap()..];
    assert!(!img[..img.find('>').unwrap()].contains("&#x"), "the inlined image is written as it is");
    let qr = attributes(img);
    assert!(qr["src"].starts_with("data:image/png;base64,iVBORw0KGgo"), "{qr:?}");
    assert_eq!((qr["width"].as_str(), qr["alt"].as_str()), ("256", "QR code for your authenticator app"));
    let secret = code_after(&settings, "id=\"text-totp_secret_key\"");
    let key = latchkey_domain::second_factor::totp::TotpKey::from_secret(&secret).expect("the key is shown");

    let code = key.code_at(latchkey_domain::time::Clock::now(app.clock.as_ref()));
    let linked = browser.submit(&settings, "form-totp", &[("totp_code", &code)], "submit-totp").await;
    assert!(linked.has("data-testid=\"message-1050001\""), "{}", linked.html);
    assert!(linked.has("id=\"submit-totp_unlink\"") && !linked.has("image-totp_qr"));

    // Lookup codes: each button is a small form of its own.
    let made = browser
        .submit(
            &linked,
            "form-lookup_secret-lookup_secret_regenerate",
            &[],
            "submit-lookup_secret_regenerate",
        )
        .await;
    assert_a_good_page(&made, "en");
    let list = &made.html[made.html.find("id=\"text-lookup_secret_codes\"").unwrap()..];
    let list = &list[..list.find("</ul>").unwrap()];
    assert_eq!(list.matches("<li><code>").count(), 12, "{list}");
    let first = code_after(&made, "id=\"text-lookup_secret_codes\"");
    let saved = browser
        .submit(&made, "form-lookup_secret-lookup_secret_confirm", &[], "submit-lookup_secret_confirm")
        .await;
    assert!(saved.has("data-testid=\"message-1050001\"") && !saved.has(&first));
    let revealed = browser
        .submit(&saved, "form-lookup_secret-lookup_secret_reveal", &[], "submit-lookup_secret_reveal")
        .await;
    assert_eq!(code_after(&revealed, "id=\"text-lookup_secret_codes\""), first);

    // Signing in elsewhere by password ends on the login page asking for
    // the second factor (the step-up login), which then lets the browser in.
    let mut other = Browser::new(&app, "en");
    let login = other.open("/ui/login").await;
    let values = [("identifier", "factors@example.com"), ("password", PASSWORD)];
    let step_up = other.submit(&login, "form-main", &values, "submit-password").await;
    assert_a_good_page(&step_up, "en");
    assert!(step_up.url.contains("/ui/login?flow="), "{}", step_up.url);
    assert!(
        step_up.has("data-testid=\"message-1010004\"") && step_up.has("id=\"form-totp\""),
        "{}",
        step_up.html
    );
    // Until the code is in, the landing page sends it back there.
    let again = other.open("/ui/welcome").await;
    assert!(again.url.contains("/ui/login?flow=") && again.has("id=\"form-totp\""), "{}", again.url);
    app.clock.advance(std::time::Duration::from_secs(30));
    let code = key.code_at(latchkey_domain::time::Clock::now(app.clock.as_ref()));
    let welcome = other.submit(&step_up, "form-totp", &[("totp_code", &code)], "submit-totp").await;
    assert!(welcome.has("data-testid=\"welcome-signed-in\""), "{}", welcome.html);
    let settings = other.open("/ui/settings").await;
    assert_a_good_page(&settings, "en");
    app.stop().await;
}

/// Sign-up by emailed code renders from the flow's nodes alone: the send
/// button beside the password, then the code form and its resend button.
async fn sign_up_by_code_on_the_pages(backend: Backend) {
    let mut schema = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut schema, crate::code_registration::SCHEMA.as_bytes()).unwrap();
    let url = format!("file://{}", schema.path().display());
    let app = spawn_app_with(backend, |c| {
        pages_on(c);
        c.identity.schemas = vec![latchkey::config::SchemaEntry { id: "default".into(), url }];
        c.selfservice.methods.code.passwordless_enabled = true;
        c.selfservice.flows.registration.after.code.hooks =
            vec![latchkey::config::Hook { hook: "session".into(), config: None }];
    })
    .await;
    let mut browser = Browser::new(&app, "en");
    let first = browser.open("/ui/registration").await;
    assert_a_good_page(&first, "en");
    assert!(first.has("value=\"code\" formnovalidate>Send sign up code</button>"), "{}", first.html);
    let sent =
        browser.submit(&first, "form-main", &[("traits.email", "pages@example.com")], "submit-code").await;
    assert_a_good_page(&sent, "en");
    assert!(sent.has("data-testid=\"message-1040005\""), "{}", sent.html);
    let resent = browser.submit(&sent, "form-code-resend", &[], "submit-resend").await;
    assert!(resent.has("data-testid=\"message-1040005\""), "{}", resent.html);
    let list = browser.open("/ui/dev/mail").await;
    let link =
        attributes(&list.html[list.html.find("<a data-testid=\"mail-link\"").unwrap()..])["href"].clone();
    let message = browser.open(&link).await;
    let body_at = message.html.find("<pre id=\"mail-body\"").unwrap();
    let code: String = message.html[body_at..].chars().skip_while(|c| !c.is_ascii_digit()).take(6).collect();
    let welcome = browser.submit(&resent, "form-main", &[("code", &code)], "submit-code").await;
    assert!(
        welcome.has("data-testid=\"welcome-signed-in\"") && welcome.has("pages@example.com"),
        "{}",
        welcome.html
    );
    app.stop().await;
}

/// Sign-in by emailed code renders from its nodes alone: the code button
/// beside the password, then the code form and its resend form.
async fn passwordless_code_login_on_the_pages(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        pages_on(c);
        c.selfservice.methods.code.passwordless_enabled = true;
    })
    .await;
    create_identity(&app, "paged-coder@example.com").await;
    let mut browser = Browser::new(&app, "en");
    let login = browser.open("/ui/login").await;
    assert_a_good_page(&login, "en");
    let sent = browser
        .submit(&login, "form-main", &[("identifier", "paged-coder@example.com")], "submit-code")
        .await;
    assert_a_good_page(&sent, "en");
    assert!(sent.has("data-testid=\"message-1010014\""), "{}", sent.html);
    assert!(sent.has("id=\"form-code-resend\""), "resending is its own form: {}", sent.html);
    let resent = browser.submit(&sent, "form-code-resend", &[], "submit-resend").await;
    assert!(resent.has("data-testid=\"message-1010014\""), "{}", resent.html);
    let code = newest_code(&app, "paged-coder@example.com").await;
    let done = browser.submit(&resent, "form-main", &[("code", &code)], "submit-code").await;
    assert_a_good_page(&done, "en");
    assert!(done.url.contains("/ui/welcome"), "signed in: {} {}", done.url, done.html);
    app.stop().await;
}

/// The code in the newest mail queued for `to` (`--dev` shows subjects).
async fn newest_code(app: &TestApp, to: &str) -> String {
    // Listed newest first (RFC 3339 times with fractions of any length do
    // not sort as text).
    let outbox = app.outbox(to).await;
    let subject = outbox[0]["subject"].as_str().unwrap();
    subject.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).unwrap().to_string()
}
