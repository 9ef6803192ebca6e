#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn parts(subject: &str, text: Option<&str>, html: Option<&str>) -> TemplateParts {
    TemplateParts {
        subject: subject.into(),
        text: text.map(Into::into),
        html: html.map(Into::into),
    }
}

fn render(parts: &TemplateParts, vars: serde_json::Value) -> Result<RenderedParts, TemplateError> {
    render_template(parts, None, &vars, TemplateLimits::default())
}

#[test]
fn a_script_variable_is_escaped_in_html_and_untouched_in_text_and_subject() {
    let t = parts(
        "Hi {{ name }}",
        Some("Hello {{ name }}"),
        Some("<p>Hello {{ name }}</p>"),
    );
    let out = render(&t, json!({"name": "<script>alert(1)</script>"})).unwrap();
    assert_eq!(out.subject, "Hi <script>alert(1)</script>");
    assert_eq!(out.text.unwrap(), "Hello <script>alert(1)</script>");
    assert_eq!(
        out.html.unwrap(),
        "<p>Hello &lt;script&gt;alert(1)&lt;&#x2f;script&gt;</p>"
    );
}

#[test]
fn a_missing_variable_is_named_with_its_part() {
    let table = [
        (
            parts("Hi {{ name }}", None, None),
            json!({}),
            "subject",
            "name",
        ),
        (
            parts("x", Some("{{ user.first }}"), None),
            json!({"user": {}}),
            "text",
            "user.first",
        ),
        (
            parts("x", None, Some("{% if vip %}gold{% endif %}")),
            json!({}),
            "html",
            "vip",
        ),
    ];
    for (t, vars, want_part, want_name) in table {
        match render(&t, vars) {
            Err(TemplateError::Undefined { part, name }) => {
                assert_eq!((part, name.as_str()), (want_part, want_name));
            }
            other => panic!("{t:?}: {other:?}"),
        }
    }
}

#[test]
fn defaults_numbers_and_dates_in_a_time_zone() {
    let t = parts(
        "{{ nick|default('friend') }}",
        Some(
            "{{ total|number }} {{ big|number(decimals=0, separator=' ') }} \
             {{ -0.001|number }} {{ at|datetimeformat(format='[year]-[month]-[day] [hour]:[minute]', tz='Asia/Tokyo') }}",
        ),
        None,
    );
    let out = render(
        &t,
        json!({"total": 1234.5, "big": 1234567, "at": "2026-01-02T20:30:00Z"}),
    )
    .unwrap();
    assert_eq!(out.subject, "friend");
    assert_eq!(
        out.text.unwrap(),
        "1,234.50 1 234 567 0.00 2026-01-03 05:30"
    );
}

#[test]
fn an_endless_loop_runs_out_of_fuel_and_output_is_capped() {
    let t = parts(
        "x",
        Some(
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
        ),
        None,
    );
    assert_eq!(
        render(&t, json!({})),
        Err(TemplateError::Fuel { part: "text" })
    );
    let t = parts("x", Some("{{ 'x' * 5000 }}"), None);
    let limits = TemplateLimits {
        fuel: 100_000,
        max_output: 1000,
    };
    assert_eq!(
        render_template(&t, None, &json!({}), limits),
        Err(TemplateError::TooLarge {
            part: "text",
            max: 1000
        })
    );
}

#[test]
fn layouts_wrap_by_extends_or_as_content() {
    let layout_parts = parts(
        "",
        Some("-- {% block content %}{% endblock %} --"),
        Some(
            "<main>{% block content %}{{ content }}{% endblock %}</main><footer>{{ shop }}</footer>",
        ),
    );
    let layout = Layout {
        name: "base",
        parts: &layout_parts,
    };
    let extending = parts(
        "s",
        Some("{% extends 'base' %}{% block content %}hi {{ who }}{% endblock %}"),
        None,
    );
    let out = render_template(
        &extending,
        Some(&layout),
        &json!({"who": "<b>"}),
        TemplateLimits::default(),
    )
    .unwrap();
    assert_eq!(out.text.unwrap(), "-- hi <b> --");

    // Without extends, the rendered body is the layout's `content`:
    // escaped once, not twice.
    let plain = parts("s", None, Some("<p>{{ who }}</p>"));
    let out = render_template(
        &plain,
        Some(&layout),
        &json!({"who": "<b>", "shop": "A&B"}),
        TemplateLimits::default(),
    )
    .unwrap();
    assert_eq!(
        out.html.unwrap(),
        "<main><p>&lt;b&gt;</p></main><footer>A&amp;B</footer>"
    );
}

#[test]
fn a_broken_template_is_refused_when_checked_and_templates_cannot_read_files() {
    let broken = parts("x", Some("{% if %}"), None);
    assert!(matches!(
        check_template(&broken),
        Err(TemplateError::Syntax { part: "text", .. })
    ));
    let include = parts("x", Some("{% include '/etc/passwd' %}"), None);
    assert!(matches!(
        render(&include, json!({})),
        Err(TemplateError::Render { part: "text", .. })
    ));
    assert_eq!(
        render(&parts("x", None, None), json!([])),
        Err(TemplateError::Variables)
    );
}

#[test]
fn a_compiled_template_renders_each_time_with_its_own_variables_and_full_fuel() {
    let layout_parts = parts("", None, Some("<main>{{ content }}</main>"));
    let layout = Layout {
        name: "base",
        parts: &layout_parts,
    };
    // About half the fuel budget per render: a budget shared across renders
    // would run out on the third.
    let t = parts(
        "Hi {{ name }}",
        Some("{% for i in range(n) %}{{ i }}{% endfor %}"),
        Some("<p>{{ name }}</p>"),
    );
    let limits = TemplateLimits {
        fuel: 1000,
        max_output: 1024 * 1024,
    };
    let compiled = CompiledTemplate::new(&t, Some(&layout), limits).unwrap();
    for name in ["<a>", "b", "c & d", "e"] {
        let vars = json!({"name": name, "n": 80});
        let once = compiled.render(&vars).unwrap();
        assert_eq!(
            once,
            render_template(&t, Some(&layout), &vars, limits).unwrap()
        );
        assert_eq!(once.subject, format!("Hi {name}"));
    }
    assert_eq!(
        compiled.render(&json!({"n": 1})),
        Err(TemplateError::Undefined {
            part: "subject",
            name: "name".into()
        })
    );
    assert_eq!(
        compiled.render(&json!({"name": "x", "n": 100_000})),
        Err(TemplateError::Fuel { part: "text" })
    );
    assert!(matches!(
        CompiledTemplate::new(&parts("{% if %}", None, None), None, limits),
        Err(TemplateError::Syntax {
            part: "subject",
            ..
        })
    ));
}
