//! Query-string parsing that keeps repeated keys (`ids=a&ids=b`), which the
//! admin API uses for its list filters.

pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(query: Option<&str>) -> Self {
        Self(form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    pub fn first(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The same query pointing at another page: other pairs kept in order,
    /// `page_size` and `page_token` last.
    pub fn paged(&self, page_size: u32, page_token: &str) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.0.iter().filter(|(k, _)| k != "page_size" && k != "page_token") {
            out.append_pair(k, v);
        }
        out.append_pair("page_size", &page_size.to_string());
        out.append_pair("page_token", page_token);
        out.finish()
    }
}
