//! Offset pagination (`page`/`per_page` or `page_token`/`page_size`) with
//! `X-Total-Count` and `Link` headers, as Kratos pages `/sessions`.

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::query::QueryParams;

const DEFAULT_SIZE: u32 = 250;
const MAX_SIZE: u32 = 1000;

/// What a `page_token` holds, as Kratos writes it: the offset as a string.
#[derive(Serialize)]
struct PageToken<'a> {
    offset: &'a str,
    v: u8,
}

impl PageToken<'_> {
    fn encode(offset: &str) -> String {
        let token = PageToken { offset, v: 2 };
        URL_SAFE_NO_PAD.encode(serde_json::to_string(&token).unwrap_or_default())
    }
}

pub struct OffsetPage {
    /// Zero-based page number.
    pub number: u64,
    pub size: u32,
}

impl OffsetPage {
    pub fn from_params(params: &QueryParams) -> Result<Self, ApiError> {
        let bad =
            |what: &str| ApiError::bad_request().with_reason(format!("The {what} parameter is invalid."));
        let size = match params.first("page_size").or_else(|| params.first("per_page")) {
            None | Some("") => DEFAULT_SIZE,
            Some(v) => {
                v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| bad("page size"))?.min(MAX_SIZE)
            }
        };
        let (number, what) = if let Some(token) = params.first("page_token").filter(|t| !t.is_empty()) {
            let raw = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| bad("page_token"))?;
            let value: Value = serde_json::from_slice(&raw).map_err(|_| bad("page_token"))?;
            let offset: u64 =
                value["offset"].as_str().and_then(|o| o.parse().ok()).ok_or_else(|| bad("page_token"))?;
            (offset / u64::from(size), "page_token")
        } else {
            match params.first("page") {
                None | Some("") => (0, "page"),
                Some(v) => (v.parse::<u64>().map_err(|_| bad("page"))?, "page"),
            }
        };
        // The offset goes to the database as a signed 64-bit number, and
        // the links add a page to it.
        let fits = number
            .checked_add(1)
            .and_then(|n| n.checked_mul(u64::from(size)))
            .is_some_and(|end| end <= i64::MAX as u64);
        if !fits {
            return Err(bad(what));
        }
        Ok(Self { number, size })
    }

    /// Fits an `i64` (checked in `from_params`).
    pub fn offset(&self) -> u64 {
        self.number * u64::from(self.size)
    }

    fn token(offset: u64) -> String {
        PageToken::encode(&offset.to_string())
    }

    /// `X-Total-Count` and `first`/`next`/`prev`/`last` links.
    pub fn headers(&self, path: &str, params: &QueryParams, total: u64, headers: &mut HeaderMap) {
        let size = u64::from(self.size);
        let last_page = total.saturating_sub(1) / size;
        let link = |page: u64, rel: &str| {
            format!("<{path}?{}>; rel=\"{rel}\"", params.paged(self.size, &Self::token(page * size)))
        };
        let mut links = vec![link(0, "first")];
        if self.number < last_page {
            links.push(link(self.number + 1, "next"));
        }
        if self.number > 0 {
            links.push(link(self.number - 1, "prev"));
        }
        links.push(link(last_page, "last"));
        if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
            headers.insert("x-total-count", v);
        }
        if let Ok(v) = HeaderValue::from_str(&links.join(",")) {
            headers.insert(axum::http::header::LINK, v);
        }
    }
}

/// Keyset pagination (`page_size`/`page_token`, the token being the last id
/// of the previous page) with `first`/`next` links, as Kratos pages
/// identities, admin sessions and courier messages.
pub struct KeysetPage {
    pub size: u32,
    pub after: Option<uuid::Uuid>,
}

impl KeysetPage {
    pub fn from_params(params: &QueryParams, default: u32, max: u32) -> Result<Self, ApiError> {
        let size = Self::size(params, default, max)?;
        let after = match params.first("page_token").filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => Some(uuid::Uuid::parse_str(token).map_err(|_| invalid_token())?),
        }
        .filter(|id| !id.is_nil());
        Ok(Self { size, after })
    }

    /// `page_size` (or `per_page`), within `max`.
    pub fn size(params: &QueryParams, default: u32, max: u32) -> Result<u32, ApiError> {
        Ok(match params.first("page_size").or_else(|| params.first("per_page")) {
            None | Some("") => default,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::bad_request().with_reason("page_size must be a positive integer."))?
                .min(max),
        })
    }

    /// The `Link` header: `first` always, `next` when a further page exists
    /// (the caller fetched one row more than `size` to find out).
    pub fn link(
        &self,
        path: &str,
        params: &QueryParams,
        last: Option<uuid::Uuid>,
        has_next: bool,
    ) -> Option<HeaderValue> {
        let next = last.filter(|_| has_next).map(|last| last.to_string());
        keyset_link(path, params, self.size, &uuid::Uuid::nil().to_string(), next.as_deref())
    }
}

/// A `page_token` that does not parse.
pub fn invalid_token() -> ApiError {
    ApiError::bad_request().with_reason("The page_token is invalid.")
}

/// The `Link` header of a keyset page: `first` (with `first_token`) always,
/// `next` when there is a next token.
pub fn keyset_link(
    path: &str,
    params: &QueryParams,
    size: u32,
    first_token: &str,
    next_token: Option<&str>,
) -> Option<HeaderValue> {
    let mut links = vec![format!("<{path}?{}>; rel=\"first\"", params.paged(size, first_token))];
    if let Some(next) = next_token {
        links.push(format!("<{path}?{}>; rel=\"next\"", params.paged(size, next)));
    }
    HeaderValue::from_str(&links.join(",")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_page(query: &str) -> Result<OffsetPage, u16> {
        OffsetPage::from_params(&QueryParams::parse(Some(query))).map_err(|e| e.status.as_u16())
    }

    fn token(offset: &str) -> String {
        PageToken::encode(offset)
    }

    #[test]
    fn offsets_that_overflow_are_refused() {
        let page = offset_page("page=3&per_page=10").unwrap();
        assert_eq!((page.number, page.offset()), (3, 30));
        // The largest page whose end still fits an i64 is accepted.
        let last = (i64::MAX as u64) / 1000 - 1;
        assert_eq!(offset_page(&format!("page={last}&page_size=1000")).unwrap().offset(), last * 1000);
        for query in [
            format!("page={}&page_size=1000", last + 1),
            format!("page={}", u64::MAX),
            "page=18446744073709551616".into(),
            "page=-1".into(),
            "page_size=18446744073709551616".into(),
            "page_size=-1".into(),
            "page_size=0".into(),
            format!("page_token={}", token(&u64::MAX.to_string())),
            format!("page_token={}", token("-5")),
            "page_token=%%%garbage".into(),
            format!("page_token={}", URL_SAFE_NO_PAD.encode("not json")),
        ] {
            assert_eq!(offset_page(&query).err(), Some(400), "{query}");
        }
        // Links for the last acceptable page are built without overflow.
        let page = offset_page(&format!("page={last}&page_size=1000")).unwrap();
        let mut headers = HeaderMap::new();
        page.headers("/sessions", &QueryParams::parse(None), u64::MAX, &mut headers);
        assert!(headers["link"].to_str().unwrap().contains("rel=\"next\""));
    }

    #[test]
    fn keyset_pages_refuse_bad_sizes_and_tokens() {
        let parse = |q: &str| KeysetPage::from_params(&QueryParams::parse(Some(q)), 250, 1000);
        assert_eq!(parse("page_size=5000").unwrap().size, 1000);
        for query in ["page_size=18446744073709551616", "page_size=-1", "page_size=0", "page_token=zzz"] {
            assert_eq!(parse(query).err().map(|e| e.status.as_u16()), Some(400), "{query}");
        }
    }
}
