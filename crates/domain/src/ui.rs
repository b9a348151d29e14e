//! The UI container every flow carries: the form a client renders (nodes)
//! and the messages it shows, in Kratos's shape so Ory Elements and SDKs
//! can render it unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::text::Message;

/// Which part of a form a node belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Default,
    Password,
    Profile,
    Code,
    Link,
    LookupSecret,
    Totp,
}

/// One form element: an input, a link (`a`), an image (`img`) or a text
/// (`text`). Kratos's `script` kind is not built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(rename = "type")]
    pub kind: String,
    pub group: Group,
    pub attributes: Value,
    pub messages: Vec<Message>,
    pub meta: Meta,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<Message>,
}

/// An input node; `value` is omitted when `None`, `required` when false.
pub struct Input<'a> {
    pub name: &'a str,
    pub input_type: &'a str,
    pub group: Group,
    pub value: Option<Value>,
    pub required: bool,
    pub autocomplete: Option<&'a str>,
    pub label: Option<Message>,
}

impl Input<'_> {
    pub fn into_node(self) -> Node {
        let mut attributes = json!({
            "name": self.name,
            "type": self.input_type,
            "disabled": false,
            "node_type": "input",
        });
        let map = attributes.as_object_mut().expect("built as an object");
        if let Some(value) = self.value {
            map.insert("value".into(), value);
        }
        if self.required {
            map.insert("required".into(), Value::Bool(true));
        }
        if let Some(autocomplete) = self.autocomplete {
            map.insert("autocomplete".into(), Value::String(autocomplete.into()));
        }
        Node {
            kind: "input".into(),
            group: self.group,
            attributes,
            messages: Vec::new(),
            meta: Meta { label: self.label },
        }
    }
}

impl Node {
    pub fn name(&self) -> Option<&str> {
        self.attributes.get("name").and_then(Value::as_str)
    }

    /// What tells the node apart, as Kratos's node id: an input's `name`,
    /// else the `id` links, images and texts carry.
    pub fn id(&self) -> Option<&str> {
        self.name().or_else(|| self.attributes.get("id").and_then(Value::as_str))
    }

    /// An image (`img` node), e.g. a QR code as a `data:` URL.
    pub fn image(group: Group, id: &str, src: &str, side: u32, label: Message) -> Node {
        Node {
            kind: "img".into(),
            group,
            attributes: json!({ "src": src, "id": id, "width": side, "height": side, "node_type": "img" }),
            messages: Vec::new(),
            meta: Meta { label: Some(label) },
        }
    }

    /// A text to show (`text` node), labelled.
    pub fn text(group: Group, id: &str, text: Message, label: Message) -> Node {
        Node {
            kind: "text".into(),
            group,
            attributes: json!({ "text": text, "id": id, "node_type": "text" }),
            messages: Vec::new(),
            meta: Meta { label: Some(label) },
        }
    }

    /// The hidden CSRF node; API flows carry it with an empty value.
    pub fn csrf(token: &str) -> Node {
        Input {
            name: "csrf_token",
            input_type: "hidden",
            group: Group::Default,
            value: Some(Value::String(token.into())),
            required: true,
            autocomplete: None,
            label: None,
        }
        .into_node()
    }

    /// The password input; `autocomplete` tells password managers whether
    /// to offer a saved (`current-password`) or a new (`new-password`) one.
    pub fn password(autocomplete: &str) -> Node {
        Input {
            name: "password",
            input_type: "password",
            group: Group::Password,
            value: None,
            required: true,
            autocomplete: Some(autocomplete),
            label: Some(crate::text::label_password()),
        }
        .into_node()
    }

    /// A link (`a` node), such as the way onwards after a finished flow.
    pub fn anchor(group: Group, id: &str, href: &str, title: Message) -> Node {
        Node {
            kind: "a".into(),
            group,
            attributes: json!({ "id": id, "href": href, "title": title, "node_type": "a" }),
            messages: Vec::new(),
            meta: Meta { label: Some(title) },
        }
    }

    /// A submit button for `method`.
    pub fn submit(group: Group, method: &str, label: Message) -> Node {
        Input {
            name: "method",
            input_type: "submit",
            group,
            value: Some(Value::String(method.into())),
            required: false,
            autocomplete: None,
            label: Some(label),
        }
        .into_node()
    }
}

/// The form of a flow: where to submit, how, and what to show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub action: String,
    pub method: String,
    pub nodes: Vec<Node>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Message>,
}

impl Container {
    pub fn new(action: String) -> Self {
        Self { action, method: "POST".into(), nodes: Vec::new(), messages: Vec::new() }
    }

    pub fn node_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.name() == Some(name))
    }

    /// Adds the node, replacing one of the same id and group.
    pub fn upsert(&mut self, node: Node) {
        match self.nodes.iter_mut().find(|n| n.id() == node.id() && n.group == node.group) {
            Some(existing) => *existing = node,
            None => self.nodes.push(node),
        }
    }

    /// Sets the value a node shows back to the user (never for passwords).
    pub fn set_value(&mut self, name: &str, value: Value) {
        if let Some(node) = self.node_mut(name) {
            node.attributes["value"] = value;
        }
    }

    /// Clears messages from a previous submit.
    pub fn reset_messages(&mut self) {
        self.messages.clear();
        for node in &mut self.nodes {
            node.messages.clear();
        }
    }

    /// Attaches a message to the named node, or to the form when no node has that name.
    pub fn add_message(&mut self, node: Option<&str>, message: Message) {
        match node.and_then(|name| self.node_mut(name)) {
            Some(n) => n.messages.push(message),
            None => self.messages.push(message),
        }
    }
}

/// Form inputs for every trait in an identity schema (`traits.<path>`),
/// typed from the JSON type and format, required from the schema, labelled
/// with the schema's `title`.
pub fn trait_nodes(schema: &Value, group: Group) -> Vec<Node> {
    let mut nodes = Vec::new();
    if let Some(traits) = schema.pointer("/properties/traits") {
        collect_trait_nodes(schema, traits, "traits", false, group, &mut nodes, 0);
    }
    nodes
}

fn collect_trait_nodes(
    root: &Value,
    node: &Value,
    name: &str,
    required: bool,
    group: Group,
    out: &mut Vec<Node>,
    depth: usize,
) {
    if depth > 16 {
        return;
    }
    let node = match node.get("$ref").and_then(Value::as_str) {
        Some(r) if r.starts_with('#') => match root.pointer(&r[1..]) {
            Some(target) => target,
            None => return,
        },
        _ => node,
    };
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        let required_list: Vec<&str> = node
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (key, sub) in props {
            collect_trait_nodes(
                root,
                sub,
                &format!("{name}.{key}"),
                required_list.contains(&key.as_str()),
                group,
                out,
                depth + 1,
            );
        }
        return;
    }
    let json_type = node.get("type").and_then(Value::as_str).unwrap_or("string");
    let format = node.get("format").and_then(Value::as_str);
    let (input_type, autocomplete) = match (json_type, format) {
        ("number" | "integer", _) => ("number", None),
        ("boolean", _) => ("checkbox", None),
        (_, Some("email")) => ("email", Some("email")),
        (_, Some("tel")) => ("tel", Some("tel")),
        (_, Some("date")) => ("date", None),
        (_, Some("date-time")) => ("datetime-local", None),
        (_, Some("uri")) => ("url", Some("url")),
        _ => ("text", None),
    };
    let label = node.get("title").and_then(Value::as_str).map(|title| crate::text::label_trait(title, name));
    let mut built = Input { name, input_type, group, value: None, required, autocomplete, label }.into_node();
    if let Some(max) = node.get("maxLength").and_then(Value::as_u64) {
        built.attributes["maxlength"] = Value::from(max);
    }
    if let Some(pattern) = node.get("pattern").and_then(Value::as_str) {
        built.attributes["pattern"] = Value::String(pattern.into());
    }
    out.push(built);
}

/// Flattens `{"name": {"first": "Ada"}}` into `[("traits.name.first", "Ada")]`
/// so submitted values can be shown back in the form.
pub fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}
