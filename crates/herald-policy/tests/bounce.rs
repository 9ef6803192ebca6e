//! The bounce classifier against real replies: every row of
//! `data/smtp-replies.tsv` (provider, code, enhanced code, text, expected
//! class, whether the provider says to retry, where the reply was seen).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_policy::{BounceClass, RULES, Rule, classify, classify_with};

const TABLE: &str = include_str!("data/smtp-replies.tsv");

struct Row<'a> {
    provider: &'a str,
    code: u16,
    enhanced: Option<&'a str>,
    text: &'a str,
    class: BounceClass,
}

fn rows() -> Vec<Row<'static>> {
    TABLE
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 7, "seven columns: {line}");
            Row {
                provider: f[0],
                code: f[1].parse().unwrap(),
                enhanced: Some(f[2]).filter(|e| !e.is_empty()),
                text: f[3],
                class: f[4].parse().unwrap(),
            }
        })
        .collect()
}

#[test]
fn every_real_reply_gets_its_class() {
    let rows = rows();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    let wrong: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let got = classify(r.code, r.enhanced, r.text);
            (got != r.class).then(|| {
                format!(
                    "{} {} {:?} {:?}: expected {}, got {got}",
                    r.provider, r.code, r.enhanced, r.text, r.class
                )
            })
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} misclassified:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn the_table_covers_the_big_providers_and_every_class() {
    let rows = rows();
    for provider in [
        "Gmail",
        "Microsoft",
        "Yahoo",
        "QQ",
        "NetEase",
        "Postfix",
        "Exim",
    ] {
        assert!(
            rows.iter().any(|r| r.provider == provider),
            "no reply from {provider}"
        );
    }
    for class in BounceClass::ALL {
        assert!(rows.iter().any(|r| r.class == class), "no {class} reply");
    }
}

#[test]
fn a_gmail_reputation_block_is_policy_not_a_dead_address() {
    let text = "This message is likely suspicious due to the very low reputation of the \
                sending IP address.";
    assert_eq!(classify(550, Some("5.7.1"), text), BounceClass::Policy);
    assert_eq!(classify(421, Some("4.7.0"), text), BounceClass::RateLimited);
}

#[test]
fn codes_alone_decide_when_the_text_says_nothing() {
    let cases = [
        (550, Some("5.1.1"), BounceClass::InvalidRecipient),
        (452, Some("4.2.2"), BounceClass::MailboxFull),
        (554, Some("5.6.1"), BounceClass::Message),
        (552, Some("5.3.4"), BounceClass::Message),
        (550, Some("5.7.1"), BounceClass::Policy),
        (451, Some("4.7.1"), BounceClass::RateLimited),
        (535, Some("5.7.8"), BounceClass::Auth),
        (530, None, BounceClass::Auth),
        (451, Some("4.4.2"), BounceClass::Network),
        (554, None, BounceClass::Other),
        (250, Some("2.0.0"), BounceClass::Other),
    ];
    for (code, enhanced, class) in cases {
        assert_eq!(classify(code, enhanced, "x"), class, "{code} {enhanced:?}");
    }
}

#[test]
fn a_maintainer_extends_the_table_with_a_line() {
    let text = "554 rejected: recipient mailbox gone fishing";
    assert_eq!(classify(554, None, text), BounceClass::Other);
    let mut rules = vec![Rule {
        codes: (500, 599),
        enhanced: "",
        text: &["gone fishing"],
        class: BounceClass::InvalidRecipient,
    }];
    rules.extend_from_slice(RULES);
    assert_eq!(
        classify_with(&rules, 554, None, text),
        BounceClass::InvalidRecipient
    );
}
