//! A flow's `ui` (action, method, nodes, messages) turned into the plain
//! HTML forms a page renders, knowing nothing of any one flow or method:
//!
//! - Nodes are grouped by `group`. When the shared `default` group holds
//!   only hidden fields (settings, recovery), each method group is its own
//!   form carrying those fields; otherwise (login, registration) all nodes
//!   share one form, as their visible default fields serve every method.
//! - A submit button that sends a field other than `method` (resend a code,
//!   go back a screen) is its own small form: the hidden fields plus
//!   `method=<its group>`, so it works without JavaScript and without the
//!   visible fields' `required` blocking it.
//! - A `method` button skips the browser's validation when the form holds
//!   required fields of another method's group.
//! - Images (`img`, e.g. a QR code) and texts (`text`, e.g. a key or a list
//!   of codes, whose message context lists `secrets`) are shown with their
//!   labels; an image only from a web URL or an image `data:` URL.

use serde::Serialize;
use serde_json::Value;

use super::i18n::Lang;

#[derive(Debug, Serialize)]
pub struct Page {
    pub action: String,
    pub method: String,
    pub messages: Vec<Text>,
    pub forms: Vec<Form>,
}

#[derive(Debug, Serialize)]
pub struct Form {
    /// `form-<group>` (`form-main` for the shared form), also its test id.
    pub id: String,
    /// A heading, when a page shows several method forms.
    pub title: Option<String>,
    pub hidden: Vec<Hidden>,
    pub fields: Vec<Field>,
}

#[derive(Debug, Serialize)]
pub struct Hidden {
    pub name: String,
    pub value: String,
}

/// One visible node.
#[derive(Debug, Serialize)]
pub struct Field {
    /// `input`, `checkbox`, `submit`, `link`, `image` or `text`.
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    pub group: String,
    pub input_type: String,
    /// Empty when the node has none.
    pub value: String,
    pub label: String,
    pub required: bool,
    pub disabled: bool,
    pub checked: bool,
    /// The first field with an error takes the focus.
    pub autofocus: bool,
    pub autocomplete: Option<String>,
    pub pattern: Option<String>,
    pub maxlength: Option<u64>,
    pub href: Option<String>,
    /// An image's web URL, when it is one a page may show.
    pub src: Option<String>,
    /// An image inlined as a base64 `data:` URL (a QR code): checked to hold
    /// nothing but base64, so the template writes it unescaped (escaping
    /// each `/` would triple its size).
    pub src_inline: Option<String>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    /// A text node's text (its `label` is the node's label).
    pub text: String,
    /// A text node's list, when its message lists `secrets` (lookup codes).
    pub items: Vec<String>,
    /// `formnovalidate` on a submit button.
    pub novalidate: bool,
    /// The id of the element holding `messages`, for `aria-describedby`.
    pub messages_id: Option<String>,
    pub invalid: bool,
    pub messages: Vec<Text>,
}

#[derive(Debug, Serialize)]
pub struct Text {
    pub id: u64,
    /// `info`, `error` or `success`.
    pub kind: String,
    pub text: String,
}

pub fn build(ui: &Value, lang: Lang) -> Page {
    let nodes: Vec<&Value> =
        ui.get("nodes").and_then(Value::as_array).map(|n| n.iter().collect()).unwrap_or_default();
    let mut ids = Ids::default();
    let group_of = |node: &Value| node.get("group").and_then(Value::as_str).unwrap_or("default").to_string();
    let hidden_of = |node: &Value| attr_str(node, "type") == Some("hidden");
    let shared: Vec<&Value> = nodes.iter().copied().filter(|n| group_of(n) == "default").collect();
    let mut groups: Vec<String> = Vec::new();
    for node in &nodes {
        let group = group_of(node);
        if group != "default" && !groups.contains(&group) {
            groups.push(group);
        }
    }
    let solo = |node: &Value| is_submit(node) && attr_str(node, "name") != Some("method");
    let split = shared.iter().all(|n| hidden_of(n)) && groups.len() > 1;

    let mut forms = Vec::new();
    let sections: Vec<(String, Vec<&Value>)> = if split {
        groups
            .iter()
            .map(|g| {
                let members = nodes.iter().copied().filter(|n| group_of(n) == "default" || &group_of(n) == g);
                (g.clone(), members.collect())
            })
            .collect()
    } else {
        vec![("main".to_string(), nodes.clone())]
    };
    for (name, members) in &sections {
        let hidden: Vec<Hidden> = members.iter().filter(|n| hidden_of(n)).map(|n| hidden_field(n)).collect();
        let visible: Vec<&Value> = members.iter().copied().filter(|n| !hidden_of(n) && !solo(n)).collect();
        if visible.is_empty() {
            continue;
        }
        let fields =
            visible.iter().map(|n| field(n, &group_of(n), members, &group_of, lang, &mut ids)).collect();
        forms.push(Form { id: format!("form-{name}"), title: None, hidden, fields });
    }
    let first_invalid = forms.iter_mut().flat_map(|f| f.fields.iter_mut()).find(|f| f.invalid);
    if let Some(field) = first_invalid.filter(|f| matches!(f.kind, "input" | "checkbox")) {
        field.autofocus = true;
    }
    if forms.len() > 1 {
        for form in &mut forms {
            let name = form.id.trim_start_matches("form-");
            form.title = Some(lang.word(&format!("group_{name}")).unwrap_or(name).to_string());
        }
    }
    for node in nodes.iter().copied().filter(|n| solo(n)) {
        let group = group_of(node);
        let mut hidden: Vec<Hidden> = nodes
            .iter()
            .filter(|n| hidden_of(n) && (group_of(n) == "default" || group_of(n) == group))
            .map(|n| hidden_field(n))
            .collect();
        if !hidden.iter().any(|h| h.name == "method") {
            hidden.push(Hidden { name: "method".into(), value: group.clone() });
        }
        let name = attr_str(node, "name").unwrap_or_default();
        let form_id = ids.unique(&format!("form-{group}-{}", slug(name)));
        let field = field(node, &group, &[node], &group_of, lang, &mut ids);
        // A method of lone buttons only (lookup codes) is headed by its first.
        let headed = forms
            .iter()
            .any(|f| f.id == format!("form-{group}") || f.id.starts_with(&format!("form-{group}-")));
        let title =
            (split && !headed).then(|| lang.word(&format!("group_{group}")).unwrap_or(&group).to_string());
        forms.push(Form { id: form_id, title, hidden, fields: vec![field] });
    }
    Page {
        action: ui
            .get("action")
            .and_then(Value::as_str)
            .filter(|a| is_web_url(a))
            .unwrap_or_default()
            .to_string(),
        method: ui.get("method").and_then(Value::as_str).unwrap_or("POST").to_string(),
        messages: messages(ui.get("messages"), lang),
        forms,
    }
}

fn field(
    node: &Value,
    group: &str,
    form: &[&Value],
    group_of: &dyn Fn(&Value) -> String,
    lang: Lang,
    ids: &mut Ids,
) -> Field {
    let name = attr_str(node, "name").unwrap_or_default().to_string();
    let input_type = attr_str(node, "type").unwrap_or("text").to_string();
    let label_message = node.pointer("/meta/label");
    let label = label_message.map(|m| lang.message(m)).unwrap_or_else(|| name.clone());
    let node_messages = messages(node.get("messages"), lang);
    let kind = match node.get("type").and_then(Value::as_str) {
        Some("input") if input_type == "submit" || input_type == "button" => "submit",
        Some("input") if input_type == "checkbox" => "checkbox",
        Some("input") => "input",
        Some("a") => "link",
        Some("img") => "image",
        _ => "text",
    };
    let value = node.pointer("/attributes/value").and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    });
    let id = match kind {
        "submit" if name == "method" => {
            ids.unique(&format!("submit-{}", slug(value.as_deref().unwrap_or(group))))
        }
        "submit" => ids.unique(&format!("submit-{}", slug(&name))),
        "link" => ids.unique(&format!("link-{}", slug(attr_str(node, "id").unwrap_or("node")))),
        "text" => ids.unique(&format!("text-{}", slug(attr_str(node, "id").unwrap_or("node")))),
        "image" => ids.unique(&format!("image-{}", slug(attr_str(node, "id").unwrap_or("node")))),
        _ => ids.unique(&format!("input-{}", slug(&name))),
    };
    // Another method's required field must not stop this method's button.
    let novalidate = kind == "submit"
        && form.iter().any(|n| {
            let other = group_of(n);
            n.pointer("/attributes/required") == Some(&Value::Bool(true))
                && other != "default"
                && other != group
        });
    let message = node.pointer("/attributes/text").filter(|_| kind == "text");
    let text = message.map(|m| lang.message(m)).unwrap_or_default();
    let items = message
        .and_then(|m| m.pointer("/context/secrets"))
        .and_then(Value::as_array)
        .map(|list| list.iter().map(|m| lang.message(m)).collect())
        .unwrap_or_default();
    // A text or image without a label of its own shows none.
    let label =
        if matches!(kind, "text" | "image") && label_message.is_none() { String::new() } else { label };
    Field {
        kind,
        messages_id: (!node_messages.is_empty()).then(|| format!("{id}-messages")),
        invalid: node_messages.iter().any(|m| m.kind == "error"),
        messages: node_messages,
        id,
        name,
        group: group.to_string(),
        checked: kind == "checkbox" && value.as_deref() == Some("true"),
        autofocus: false,
        value: if kind == "checkbox" { "true".into() } else { value.unwrap_or_default() },
        input_type,
        label,
        text,
        items,
        src: attr_str(node, "src").filter(|s| is_web_url(s)).map(str::to_string),
        src_inline: attr_str(node, "src").filter(|s| is_inline_image(s)).map(str::to_string),
        width: node.pointer("/attributes/width").and_then(Value::as_u64),
        height: node.pointer("/attributes/height").and_then(Value::as_u64),
        required: node.pointer("/attributes/required") == Some(&Value::Bool(true)),
        disabled: node.pointer("/attributes/disabled") == Some(&Value::Bool(true)),
        autocomplete: attr_str(node, "autocomplete").map(str::to_string),
        pattern: attr_str(node, "pattern").map(str::to_string),
        maxlength: node.pointer("/attributes/maxlength").and_then(Value::as_u64),
        href: attr_str(node, "href").filter(|h| is_web_url(h)).map(str::to_string),
        novalidate,
    }
}

fn hidden_field(node: &Value) -> Hidden {
    let value = match node.pointer("/attributes/value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    Hidden { name: attr_str(node, "name").unwrap_or_default().to_string(), value }
}

fn messages(list: Option<&Value>, lang: Lang) -> Vec<Text> {
    list.and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|m| Text {
                    id: m.get("id").and_then(Value::as_u64).unwrap_or_default(),
                    kind: m.get("type").and_then(Value::as_str).unwrap_or("info").to_string(),
                    text: lang.message(m),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn attr_str<'a>(node: &'a Value, key: &str) -> Option<&'a str> {
    node.get("attributes").and_then(|a| a.get(key)).and_then(Value::as_str)
}

fn is_submit(node: &Value) -> bool {
    node.get("type").and_then(Value::as_str) == Some("input")
        && matches!(attr_str(node, "type"), Some("submit" | "button"))
}

/// Only web links and paths: never `javascript:` or `data:`.
fn is_web_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("https://")
        || lower.starts_with("http://")
        || (url.starts_with('/') && !url.starts_with("//"))
}

/// An image inlined as a base64 `data:` URL; never another `data:` type,
/// which a browser could render as a page, nor a character that could
/// leave the attribute.
fn is_inline_image(src: &str) -> bool {
    ["data:image/png;base64,", "data:image/jpeg;base64,", "data:image/gif;base64,"]
        .iter()
        .find_map(|prefix| src.strip_prefix(prefix))
        .is_some_and(|data| data.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)))
}

/// A name as an id fragment: `traits.email` → `traits-email`.
fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect()
}

/// Element ids handed out once each.
#[derive(Default)]
struct Ids(Vec<String>);

impl Ids {
    fn unique(&mut self, wanted: &str) -> String {
        let mut id = wanted.to_string();
        let mut n = 2;
        while self.0.contains(&id) {
            id = format!("{wanted}-{n}");
            n += 1;
        }
        self.0.push(id.clone());
        id
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(name: &str, kind: &str, group: &str, required: bool) -> Value {
        json!({"type": "input", "group": group, "messages": [], "meta": {"label": {"id": 1070001, "text": name, "type": "info"}},
            "attributes": {"name": name, "type": kind, "required": required, "node_type": "input"}})
    }

    fn button(name: &str, value: &str, group: &str) -> Value {
        json!({"type": "input", "group": group, "messages": [], "meta": {"label": {"id": 1070009, "text": "Go", "type": "info"}},
            "attributes": {"name": name, "type": "submit", "value": value, "node_type": "input"}})
    }

    fn csrf() -> Value {
        json!({"type": "input", "group": "default", "messages": [], "meta": {},
            "attributes": {"name": "csrf_token", "type": "hidden", "value": "tok", "required": true, "node_type": "input"}})
    }

    #[test]
    fn visible_shared_fields_keep_one_form() {
        let ui = json!({"action": "http://x/self-service/login?flow=1", "method": "POST", "nodes": [
            csrf(), input("identifier", "text", "default", true),
            input("password", "password", "password", true), button("method", "password", "password"),
        ]});
        let page = build(&ui, Lang::En);
        assert_eq!(page.forms.len(), 1);
        let form = &page.forms[0];
        assert_eq!(form.id, "form-main");
        assert_eq!(form.hidden[0].name, "csrf_token");
        let ids: Vec<_> = form.fields.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["input-identifier", "input-password", "submit-password"]);
        assert!(!form.fields[2].novalidate);
    }

    #[test]
    fn hidden_only_shared_fields_split_the_methods() {
        let ui = json!({"action": "http://x/s", "method": "POST", "nodes": [
            csrf(), input("traits.email", "email", "profile", true), button("method", "profile", "profile"),
            input("password", "password", "password", true), button("method", "password", "password"),
        ]});
        let page = build(&ui, Lang::De);
        let ids: Vec<_> = page.forms.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["form-profile", "form-password"]);
        assert_eq!(page.forms[0].title.as_deref(), Some("Profil"));
        assert!(page.forms.iter().all(|f| f.hidden.len() == 1 && f.fields.iter().all(|x| !x.novalidate)));
    }

    #[test]
    fn buttons_sending_another_field_stand_alone_and_skip_validation() {
        let ui = json!({"action": "http://x/s", "method": "POST", "nodes": [
            csrf(), input("code", "text", "code", true),
            {"type": "input", "group": "code", "messages": [], "meta": {},
             "attributes": {"name": "method", "type": "hidden", "value": "code", "node_type": "input"}},
            button("method", "code", "code"), button("email", "ada@example.com", "code"),
        ]});
        let page = build(&ui, Lang::En);
        assert_eq!(page.forms.len(), 2);
        let resend = &page.forms[1];
        assert_eq!(resend.id, "form-code-email");
        let hidden: Vec<_> = resend.hidden.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
        assert_eq!(hidden, [("csrf_token", "tok"), ("method", "code")]);
        assert_eq!(resend.fields[0].id, "submit-email");
    }

    #[test]
    fn a_button_of_another_method_skips_validation() {
        let ui = json!({"action": "http://x/s", "method": "POST", "nodes": [
            csrf(), input("traits.email", "email", "default", true),
            input("password", "password", "password", true), button("method", "password", "password"),
            button("method", "profile", "profile"),
        ]});
        let page = build(&ui, Lang::En);
        let buttons: Vec<_> = page.forms[0]
            .fields
            .iter()
            .filter(|f| f.kind == "submit")
            .map(|f| (f.id.as_str(), f.novalidate))
            .collect();
        assert_eq!(buttons, [("submit-password", false), ("submit-profile", true)]);
    }

    #[test]
    fn messages_are_tied_to_their_field_and_links_must_be_web_links() {
        let mut password = input("password", "password", "password", true);
        password["messages"] = json!([{"id": 4000006, "text": "wrong", "type": "error"}]);
        let ui = json!({"action": "javascript:alert(1)", "method": "POST", "nodes": [
            csrf(), password,
            {"type": "a", "group": "code", "messages": [], "meta": {"label": {"id": 1070009, "text": "Continue", "type": "info"}},
             "attributes": {"id": "continue", "href": "javascript:alert(1)", "node_type": "a"}},
        ], "messages": [{"id": 1080002, "text": "Verified", "type": "success"}]});
        let page = build(&ui, Lang::En);
        assert_eq!(page.action, "");
        assert_eq!(page.messages[0].id, 1080002);
        let field = &page.forms[0].fields[0];
        assert!(field.invalid);
        assert_eq!(field.messages_id.as_deref(), Some("input-password-messages"));
        assert_eq!(page.forms[1].fields[0].href, None);
    }

    #[test]
    fn images_and_texts_render_with_their_labels() {
        let label = |id: u64, text: &str| json!({"label": {"id": id, "text": text, "type": "info"}});
        let ui = json!({"action": "http://x/s", "method": "POST", "nodes": [
            csrf(),
            {"type": "img", "group": "totp", "messages": [], "meta": label(1050005, "QR"),
             "attributes": {"id": "totp_qr", "src": "data:image/png;base64,iVBO", "width": 256, "height": 256, "node_type": "img"}},
            {"type": "text", "group": "totp", "messages": [], "meta": label(1050017, "Key"),
             "attributes": {"id": "totp_secret_key", "node_type": "text",
                            "text": {"id": 1050006, "text": "JBSWY3DP", "type": "info", "context": {"secret": "JBSWY3DP"}}}},
            input("totp_code", "text", "totp", true), button("method", "totp", "totp"),
            {"type": "text", "group": "lookup_secret", "messages": [], "meta": label(1050010, "Codes"),
             "attributes": {"id": "lookup_secret_codes", "node_type": "text",
                            "text": {"id": 1050015, "text": "abcd1234, used", "type": "info", "context": {"secrets": [
                                {"id": 1050009, "text": "abcd1234", "type": "info"},
                                {"id": 1050014, "text": "Used 2030-01-01", "type": "info"}]}}}},
            button("lookup_secret_confirm", "true", "lookup_secret"),
            {"type": "img", "group": "lookup_secret", "messages": [], "meta": {},
             "attributes": {"id": "evil", "src": "data:text/html;base64,PHNjcmlwdD4=", "node_type": "img"}},
        ]});
        let page = build(&ui, Lang::En);
        let ids: Vec<_> = page.forms.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["form-totp", "form-lookup_secret", "form-lookup_secret-lookup_secret_confirm"]);
        let totp = &page.forms[0].fields;
        assert_eq!((totp[0].kind, totp[0].id.as_str()), ("image", "image-totp_qr"));
        assert_eq!(totp[0].src_inline.as_deref(), Some("data:image/png;base64,iVBO"));
        assert_eq!((totp[0].width, totp[0].label.as_str()), (Some(256), "QR"));
        assert_eq!(
            (totp[1].kind, totp[1].text.as_str(), totp[1].label.as_str()),
            ("text", "JBSWY3DP", "Key")
        );
        let codes = &page.forms[1].fields;
        assert_eq!(codes[0].items, ["abcd1234", "Used 2030-01-01"]);
        assert_eq!(
            (&codes[1].src, &codes[1].src_inline),
            (&None, &None),
            "a data: URL that is no image is not shown"
        );
        let confirm = &page.forms[2];
        assert_eq!(confirm.title, None, "its group is headed already");
        let hidden: Vec<_> = confirm.hidden.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
        assert_eq!(hidden, [("csrf_token", "tok"), ("method", "lookup_secret")]);
    }
}
