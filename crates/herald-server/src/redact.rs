//! The one rule for every URL and header value herald logs or prints
//! (log lines, `check-config`, configuration errors, `Debug`): what says
//! where something goes stays, what could be a credential becomes `***`.
//!
//! For a URL that is: the scheme, the user name, the host and the port
//! stay; a password becomes `***`; each path segment stays only if it is
//! a plain word (letters, `-`, `_`, `.`, at most 16 characters, digits
//! only in segments of at most 3 characters such as `v1`) and becomes
//! `***` otherwise (webhook tokens live in paths: Slack, Feishu); every
//! query value and any fragment become `***` (WeCom's `?key=`,
//! DingTalk's `?access_token=`). A value that does not parse as a URL is
//! `***` whole.
//!
//! For a header: the value of `Authorization`, `Proxy-Authorization`,
//! `Cookie`, `Set-Cookie` and any name holding `key`, `token`, `secret`,
//! `password` or `auth` becomes `***`.

/// `url` as it may be shown.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_owned();
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return "***".to_owned();
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, _)) => (rest, true),
        None => (rest, false),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let mut out = format!("{scheme}://");
    let host = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            out.push_str(&word_or_stars(user, 64));
            if userinfo.contains(':') {
                out.push_str(":***");
            }
            out.push('@');
            host
        }
        None => authority,
    };
    out.push_str(host);
    let segments: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|segment| {
            if segment.is_empty() || is_plain_word(segment) {
                segment.to_owned()
            } else {
                "***".to_owned()
            }
        })
        .collect();
    if !path.is_empty() {
        out.push('/');
        out.push_str(&segments.join("/"));
    }
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{}=***", word_or_stars(name, 32)),
                None => "***".to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    if fragment {
        out.push_str("#***");
    }
    out
}

/// A header's value as it may be shown.
pub fn header<'a>(name: &str, value: &'a str) -> &'a str {
    let name = name.to_ascii_lowercase();
    let secret = matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || ["key", "token", "secret", "password", "auth"]
        .iter()
        .any(|word| name.contains(word));
    if secret { "***" } else { value }
}

/// A path segment that names a place rather than holding a token.
fn is_plain_word(segment: &str) -> bool {
    let digits = segment.chars().filter(char::is_ascii_digit).count();
    segment.len() <= 16
        && (digits == 0 || segment.len() <= 3)
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A user or parameter name: shown when it is a plain name.
fn word_or_stars(word: &str, max: usize) -> String {
    if word.len() <= max
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        word.to_owned()
    } else {
        "***".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_where_and_lose_credentials() {
        for (raw, shown) in [
            ("sqlite://herald.db", "sqlite://herald.db"),
            (
                "sqlite:///var/lib/herald/herald.db",
                "sqlite:///var/lib/herald/herald.db",
            ),
            (
                "postgres://herald:s3cret@db:5432/herald?sslmode=require",
                "postgres://herald:***@db:5432/herald?sslmode=***",
            ),
            ("postgres://u@h/d", "postgres://u@h/d"),
            (
                "http://collector:otlp-pass@127.0.0.1:4318/v1/traces",
                "http://collector:***@127.0.0.1:4318/v1/traces",
            ),
            (
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***",
            ),
            (
                "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
                "https://hooks.slack.com/services/***/***/***",
            ),
            (
                "https://oapi.dingtalk.com/robot/send?access_token=abc123",
                "https://oapi.dingtalk.com/robot/send?access_token=***",
            ),
            (
                "https://open.feishu.cn/open-apis/bot/v2/hook/0b8d2a7e-1f3c-4d5e-9a6b-7c8d9e0f1a2b",
                "https://open.feishu.cn/open-apis/bot/v2/hook/***",
            ),
            ("https://h.example/a#token", "https://h.example/a#***"),
            (
                "https://h.example/averyveryverylongletteronlytoken",
                "https://h.example/***",
            ),
            ("not a url with a s3cret", "***"),
            ("", "***"),
        ] {
            assert_eq!(url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn secret_headers_are_starred() {
        assert_eq!(header("Authorization", "Bearer abc"), "***");
        assert_eq!(header("x-api-key", "abc"), "***");
        assert_eq!(header("X-Auth-Token", "abc"), "***");
        assert_eq!(
            header("Content-Type", "application/json"),
            "application/json"
        );
    }
}
