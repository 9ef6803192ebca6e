//! Stored templates' rendering: a subject, a text and an HTML body written
//! in MiniJinja, filled with a message's variables. HTML is escaped in
//! `html` only; a variable missing is an error that names it; a fuel
//! budget and an output cap bound what one render may cost; templates see
//! no files and no network (there is no loader: only the template and its
//! layout exist).

use std::collections::BTreeSet;
use std::io;

use minijinja::value::{Kwargs, Value};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

/// A template's sources, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateParts {
    /// The subject line's source (rendered without escaping, one line).
    pub subject: String,
    /// The plain-text body's source, if any.
    pub text: Option<String>,
    /// The HTML body's source, if any (rendered with HTML escaping).
    pub html: Option<String>,
}

/// A layout for a template: its own parts, under its name. A template
/// either names it in `{% extends "name" %}` and fills its blocks, or is
/// rendered first and given to the layout as `content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout<'a> {
    /// The layout's name, as `{% extends %}` spells it.
    pub name: &'a str,
    /// Its sources (its subject is not used).
    pub parts: &'a TemplateParts,
}

/// What one render may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    /// MiniJinja's fuel per part: roughly one unit per instruction.
    pub fuel: u64,
    /// The most bytes one rendered part may have.
    pub max_output: usize,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        Self {
            fuel: 100_000,
            max_output: 1024 * 1024,
        }
    }
}

/// A template rendered with its variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedParts {
    /// The subject.
    pub subject: String,
    /// The text body, if the template has one.
    pub text: Option<String>,
    /// The HTML body, if the template has one.
    pub html: Option<String>,
}

/// Why a template did not render. Each says which part (`subject`, `text`,
/// `html`) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The source is not a valid template.
    #[error("{part}: {detail}")]
    Syntax {
        /// The part.
        part: &'static str,
        /// MiniJinja's description, with its line.
        detail: String,
    },
    /// A variable the template uses was not given.
    #[error("{part}: undefined variable {name:?}")]
    Undefined {
        /// The part.
        part: &'static str,
        /// The variable, dotted for a missing attribute (`user.name`).
        name: String,
    },
    /// The render used up its fuel (a loop too long).
    #[error("{part}: the template used up its fuel (too much work)")]
    Fuel {
        /// The part.
        part: &'static str,
    },
    /// The rendered part is larger than the cap.
    #[error("{part}: the rendered output exceeds {max} bytes")]
    TooLarge {
        /// The part.
        part: &'static str,
        /// The cap.
        max: usize,
    },
    /// Any other failure while rendering (a filter given a wrong value…).
    #[error("{part}: {detail}")]
    Render {
        /// The part.
        part: &'static str,
        /// MiniJinja's description.
        detail: String,
    },
    /// The variables are not a JSON object.
    #[error("variables: must be an object")]
    Variables,
}

impl TemplateError {
    /// The part at fault (`variables` when they were not an object).
    pub fn part(&self) -> &'static str {
        match self {
            Self::Syntax { part, .. }
            | Self::Undefined { part, .. }
            | Self::Fuel { part }
            | Self::TooLarge { part, .. }
            | Self::Render { part, .. } => part,
            Self::Variables => "variables",
        }
    }
}

/// Checks that every part of `parts` parses (what storing a template
/// asks).
pub fn check_template(parts: &TemplateParts) -> Result<(), TemplateError> {
    for (part, source) in sources(parts) {
        let mut env = environment(part, TemplateLimits::default());
        env.add_template_owned("main", source.to_owned())
            .map_err(|e| syntax(part, &e))?;
    }
    Ok(())
}

/// Renders `parts` (in `layout`, if any) with `variables`, a JSON object.
/// Compiles them first; to render the same template many times, compile it
/// once with [`CompiledTemplate::new`].
pub fn render_template(
    parts: &TemplateParts,
    layout: Option<&Layout<'_>>,
    variables: &serde_json::Value,
    limits: TemplateLimits,
) -> Result<RenderedParts, TemplateError> {
    if !variables.is_object() {
        return Err(TemplateError::Variables);
    }
    CompiledTemplate::new(parts, layout, limits)?.render(variables)
}

/// A template (and its layout) parsed once, to be rendered many times with
/// different variables: what a cache of templates keeps. Each render gets
/// the whole fuel budget and output cap of its [`TemplateLimits`].
#[derive(Debug)]
pub struct CompiledTemplate {
    subject: CompiledPart,
    text: Option<CompiledPart>,
    html: Option<CompiledPart>,
    limits: TemplateLimits,
}

/// One part's environment: the part's source as `main`, and the layout's
/// source for that part under the layout's name.
#[derive(Debug)]
struct CompiledPart {
    part: &'static str,
    env: Environment<'static>,
    /// The layout that wraps what `main` rendered (as `content`), when the
    /// part has a layout it does not `{% extends %}`.
    wrapper: Option<String>,
}

impl CompiledTemplate {
    /// Parses every part of `parts` (with `layout`'s matching part, if
    /// any); a syntax error names its part.
    pub fn new(
        parts: &TemplateParts,
        layout: Option<&Layout<'_>>,
        limits: TemplateLimits,
    ) -> Result<Self, TemplateError> {
        let one = |part: &'static str, source: &str, layout_source: Option<&str>| {
            compile_part(
                part,
                source,
                layout.map(|l| l.name).zip(layout_source),
                limits,
            )
        };
        Ok(Self {
            subject: one("subject", &parts.subject, None)?,
            text: parts
                .text
                .as_deref()
                .map(|source| one("text", source, layout.and_then(|l| l.parts.text.as_deref())))
                .transpose()?,
            html: parts
                .html
                .as_deref()
                .map(|source| one("html", source, layout.and_then(|l| l.parts.html.as_deref())))
                .transpose()?,
            limits,
        })
    }

    /// Renders with `variables`, a JSON object.
    pub fn render(&self, variables: &serde_json::Value) -> Result<RenderedParts, TemplateError> {
        if !variables.is_object() {
            return Err(TemplateError::Variables);
        }
        let context = Value::from_serialize(variables);
        let one = |part: &CompiledPart| render_part(part, &context, variables, self.limits);
        let subject = one(&self.subject)?;
        let text = self.text.as_ref().map(one).transpose()?;
        let html = self.html.as_ref().map(one).transpose()?;
        Ok(RenderedParts {
            subject: subject.trim().to_owned(),
            text,
            html,
        })
    }
}

fn sources(parts: &TemplateParts) -> Vec<(&'static str, &str)> {
    let mut out = vec![("subject", parts.subject.as_str())];
    out.extend(parts.text.as_deref().map(|t| ("text", t)));
    out.extend(parts.html.as_deref().map(|h| ("html", h)));
    out
}

/// An environment for one part: strict, fuelled, escaping HTML only in
/// `html`, with herald's filters and no loader.
fn environment(part: &'static str, limits: TemplateLimits) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(limits.fuel));
    let escape = if part == "html" {
        AutoEscape::Html
    } else {
        AutoEscape::None
    };
    env.set_auto_escape_callback(move |_| escape);
    env.add_filter("datetimeformat", minijinja_contrib::filters::datetimeformat);
    env.add_filter("dateformat", minijinja_contrib::filters::dateformat);
    env.add_filter("timeformat", minijinja_contrib::filters::timeformat);
    env.add_filter("number", number);
    env
}

fn compile_part(
    part: &'static str,
    source: &str,
    layout: Option<(&str, &str)>,
    limits: TemplateLimits,
) -> Result<CompiledPart, TemplateError> {
    let mut env = environment(part, limits);
    if let Some((name, layout_source)) = layout {
        env.add_template_owned(name.to_owned(), layout_source.to_owned())
            .map_err(|e| syntax(part, &e))?;
    }
    env.add_template_owned("main", source.to_owned())
        .map_err(|e| syntax(part, &e))?;
    let wrapper = match layout {
        Some((name, _)) if !uses_extends(source) => Some(name.to_owned()),
        _ => None,
    };
    Ok(CompiledPart { part, env, wrapper })
}

fn render_part(
    compiled: &CompiledPart,
    context: &Value,
    variables: &serde_json::Value,
    limits: TemplateLimits,
) -> Result<String, TemplateError> {
    let part = compiled.part;
    let main = compiled
        .env
        .get_template("main")
        .map_err(|e| syntax(part, &e))?;
    let body = write_capped(part, limits.max_output, |out| {
        main.render_captured_to(context, out).map(|_| ())
    })
    .map_err(|e| render_error(part, e, &main, variables, limits))?;
    // A layout that the template does not extend wraps what it rendered,
    // as `content` (already escaped where it must be).
    match &compiled.wrapper {
        Some(name) => {
            let wrapper = compiled
                .env
                .get_template(name)
                .map_err(|e| syntax(part, &e))?;
            let content = if part == "html" {
                Value::from_safe_string(body)
            } else {
                Value::from(body)
            };
            let context = minijinja::context! { content => content, ..context.clone() };
            write_capped(part, limits.max_output, |out| {
                wrapper.render_captured_to(&context, out).map(|_| ())
            })
            .map_err(|e| render_error(part, e, &wrapper, variables, limits))
        }
        None => Ok(body),
    }
}

fn uses_extends(source: &str) -> bool {
    source.contains("{% extends") || source.contains("{%- extends")
}

/// Renders through a writer that refuses more than `max` bytes.
fn write_capped(
    part: &'static str,
    max: usize,
    render: impl FnOnce(&mut Capped) -> Result<(), minijinja::Error>,
) -> Result<String, CappedError> {
    let mut out = Capped {
        buf: Vec::new(),
        max,
        exceeded: false,
    };
    match render(&mut out) {
        Ok(()) => String::from_utf8(out.buf).map_err(|_| CappedError::Render(part_error(part))),
        Err(_) if out.exceeded => Err(CappedError::TooLarge),
        Err(e) => Err(CappedError::Render(e)),
    }
}

fn part_error(part: &'static str) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, format!("{part} is not UTF-8"))
}

enum CappedError {
    TooLarge,
    Render(minijinja::Error),
}

struct Capped {
    buf: Vec<u8>,
    max: usize,
    exceeded: bool,
}

impl io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.max {
            self.exceeded = true;
            return Err(io::Error::other("output cap"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn syntax(part: &'static str, error: &minijinja::Error) -> TemplateError {
    TemplateError::Syntax {
        part,
        detail: describe(error),
    }
}

fn describe(error: &minijinja::Error) -> String {
    match (error.detail(), error.line()) {
        (Some(detail), Some(line)) => format!("{} (line {line}): {detail}", error.kind()),
        (Some(detail), None) => format!("{}: {detail}", error.kind()),
        (None, Some(line)) => format!("{} (line {line})", error.kind()),
        (None, None) => error.kind().to_string(),
    }
}

fn render_error(
    part: &'static str,
    error: CappedError,
    template: &minijinja::Template<'_, '_>,
    variables: &serde_json::Value,
    limits: TemplateLimits,
) -> TemplateError {
    let error = match error {
        CappedError::TooLarge => {
            return TemplateError::TooLarge {
                part,
                max: limits.max_output,
            };
        }
        CappedError::Render(e) => e,
    };
    match error.kind() {
        ErrorKind::OutOfFuel => TemplateError::Fuel { part },
        ErrorKind::UndefinedError => TemplateError::Undefined {
            part,
            name: missing_variable(template, variables).unwrap_or_else(|| "?".into()),
        },
        _ => TemplateError::Render {
            part,
            detail: describe(&error),
        },
    }
}

/// The first variable `template` uses that `variables` lacks: a top-level
/// name, or else a dotted path (`user.name`) whose last step is missing.
fn missing_variable(
    template: &minijinja::Template<'_, '_>,
    variables: &serde_json::Value,
) -> Option<String> {
    let top: BTreeSet<String> = template.undeclared_variables(false).into_iter().collect();
    if let Some(name) = top
        .iter()
        .find(|name| variables.get(name.as_str()).is_none())
    {
        return Some(name.clone());
    }
    let nested: BTreeSet<String> = template.undeclared_variables(true).into_iter().collect();
    nested.into_iter().find(|path| {
        let mut at = Some(variables);
        for step in path.split('.') {
            at = at.and_then(|v| v.get(step));
        }
        at.is_none()
    })
}

/// `{{ 1234.5|number }}` → `1,234.50`; `decimals` (2) and `separator`
/// (`,`) and `point` (`.`) as keyword arguments.
fn number(value: Value, kwargs: Kwargs) -> Result<String, minijinja::Error> {
    let decimals: usize = kwargs
        .get::<Option<usize>>("decimals")?
        .unwrap_or(2)
        .min(10);
    let separator: String = kwargs
        .get::<Option<String>>("separator")?
        .unwrap_or_else(|| ",".into());
    let point: String = kwargs
        .get::<Option<String>>("point")?
        .unwrap_or_else(|| ".".into());
    kwargs.assert_all_used()?;
    let n = f64::try_from(value.clone()).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("number: {value} is not a number"),
        )
    })?;
    let fixed = format!("{:.*}", decimals, n.abs());
    let (whole, fraction) = fixed.split_once('.').unwrap_or((&fixed, ""));
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push_str(&separator);
        }
        grouped.push(digit);
    }
    let sign = if n < 0.0 && fixed.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        "-"
    } else {
        ""
    };
    if fraction.is_empty() {
        Ok(format!("{sign}{grouped}"))
    } else {
        Ok(format!("{sign}{grouped}{point}{fraction}"))
    }
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
