//! `/v1/templates`: stored templates, each change a new version, and
//! their rendering — as a preview (`…/render`) and when a message names a
//! template (rendered at acceptance, so that what is stored and retried
//! is exactly what was rendered).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use herald_api::{
    FieldError, RenderRequest, RenderedTemplate, Template, TemplateList, TemplateRequest,
};
use herald_message::{
    CompiledTemplate, MessageRequest, RenderedParts, TemplateError, TemplateParts, check_template,
};
use herald_store::{NewTemplate, TemplateRecord};

use super::messages::{body_bytes, json_object};
use super::{AppState, Problem};

/// The most characters in a template's name.
const MAX_NAME: usize = 64;

/// The metadata keys a message made from a template carries.
pub(crate) const TEMPLATE_KEY: &str = "herald.template";
/// See [`TEMPLATE_KEY`].
pub(crate) const TEMPLATE_VERSION_KEY: &str = "herald.template_version";

/// `POST /v1/templates`: a new template, version 1 (409 if the name is
/// taken).
pub(crate) async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Template>), Problem> {
    let request: TemplateRequest = json_object(&body_bytes(body)?)?;
    let name = request
        .name
        .clone()
        .ok_or_else(|| invalid("name", "is required"))?;
    check_name(&name)?;
    if state.store.template(&name, None).await?.is_some() {
        return Err(Problem::conflict(format!(
            "a template named {name:?} exists; PUT /v1/templates/{name} makes a new version"
        )));
    }
    let stored = store(&state, name, request).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// `PUT /v1/templates/{name}`: a new version of an existing template.
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Template>, Problem> {
    let request: TemplateRequest = json_object(&body_bytes(body)?)?;
    if request.name.as_ref().is_some_and(|n| *n != name) {
        return Err(invalid("name", "differs from the name in the path"));
    }
    if state.store.template(&name, None).await?.is_none() {
        return Err(not_found(&name));
    }
    Ok(Json(store(&state, name, request).await?))
}

/// `GET /v1/templates`.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<TemplateList>, Problem> {
    let templates = state.store.templates().await?;
    Ok(Json(TemplateList {
        templates: templates.into_iter().map(shown).collect(),
    }))
}

/// `GET /v1/templates/{name}` (`?version=N`).
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Template>, Problem> {
    let version = version_query(&query)?;
    let found = state.store.template(&name, version).await?;
    Ok(Json(shown(found.ok_or_else(|| not_found(&name))?)))
}

/// `DELETE /v1/templates/{name}`: every version.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    if state.store.delete_template(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}

/// `POST /v1/templates/{name}/render`: what a message would say, unsent.
pub(crate) async fn render(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RenderedTemplate>, Problem> {
    let request: RenderRequest = json_object(&body_bytes(body)?)?;
    let mut cache = Cache::default();
    let (version, parts) = cache
        .render(&state, &name, request.version, request.variables)
        .await?;
    Ok(Json(RenderedTemplate {
        name,
        version,
        subject: parts.subject,
        text: parts.text,
        html: parts.html,
    }))
}

/// Templates read once per request (a batch of one template to many
/// recipients reads it once), compiled through the node's
/// [`TemplateCache`](super::template_cache::TemplateCache).
#[derive(Default)]
pub(super) struct Cache {
    loaded: HashMap<(String, Option<u32>), (TemplateRecord, Arc<CompiledTemplate>)>,
}

impl Cache {
    /// If `request` names a template: renders it with its variables into
    /// `subject`, `text` and `html`, and says which version it was. A
    /// missing variable, a template at fault, or a template that does not
    /// exist is a 422 (nothing is stored).
    pub(super) async fn expand(
        &mut self,
        state: &AppState,
        request: &mut MessageRequest,
    ) -> Result<Option<(String, u32)>, Problem> {
        let Some(name) = request.template.take() else {
            if request.variables.is_some() || request.template_version.is_some() {
                return Err(invalid("template", "is required with variables"));
            }
            return Ok(None);
        };
        if request.subject.is_some() || request.text.is_some() || request.html.is_some() {
            return Err(invalid(
                "template",
                "replaces subject, text and html: give one or the other",
            ));
        }
        let variables = request.variables.take().unwrap_or_default();
        let version = request.template_version.take();
        let (version, parts) = self.render(state, &name, version, variables).await?;
        request.subject = Some(parts.subject);
        request.text = parts.text;
        request.html = parts.html;
        Ok(Some((name, version)))
    }

    async fn render(
        &mut self,
        state: &AppState,
        name: &str,
        version: Option<u32>,
        variables: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(u32, RenderedParts), Problem> {
        let key = (name.to_owned(), version);
        if !self.loaded.contains_key(&key) {
            // Read every time (the latest version, never a stale one);
            // parsed only when this node has not parsed these sources yet.
            let record = state
                .store
                .template(name, version)
                .await?
                .ok_or_else(|| invalid("template", format!("no template {name:?}")))?;
            let layout = match &record.layout {
                Some(layout) => {
                    Some(state.store.template(layout, None).await?.ok_or_else(|| {
                        invalid("template", format!("its layout {layout:?} does not exist"))
                    })?)
                }
                None => None,
            };
            let compiled = state
                .templates
                .compiled(&record, layout.as_ref())
                .map_err(template_problem)?;
            self.loaded.insert(key.clone(), (record, compiled));
        }
        let Some((record, compiled)) = self.loaded.get(&key) else {
            return Err(Problem::internal());
        };
        let rendered = compiled
            .render(&serde_json::Value::Object(variables))
            .map_err(template_problem)?;
        Ok((record.version, rendered))
    }
}

async fn store(
    state: &AppState,
    name: String,
    request: TemplateRequest,
) -> Result<Template, Problem> {
    if request.subject.trim().is_empty() {
        return Err(invalid("subject", "is required"));
    }
    if request.text.is_none() && request.html.is_none() {
        return Err(invalid("text", "give text, html or both"));
    }
    let parts = TemplateParts {
        subject: request.subject.clone(),
        text: request.text.clone(),
        html: request.html.clone(),
    };
    check_template(&parts).map_err(|e| invalid(e.part(), e.to_string()))?;
    if let Some(layout) = &request.layout {
        if *layout == name {
            return Err(invalid("layout", "a template cannot be its own layout"));
        }
        if state.store.template(layout, None).await?.is_none() {
            return Err(invalid("layout", format!("no template {layout:?}")));
        }
    }
    let record = state
        .store
        .put_template(NewTemplate {
            name,
            subject: request.subject,
            text: request.text,
            html: request.html,
            layout: request.layout,
            // Whole milliseconds: what every backend keeps, so that the
            // answer equals what a later GET shows.
            created_at: whole_ms(state.clock.now()),
        })
        .await?;
    tracing::info!(template = %record.name, version = record.version, "template stored");
    Ok(shown(record))
}

fn whole_ms(t: time::OffsetDateTime) -> time::OffsetDateTime {
    t.replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t)
}

fn shown(record: TemplateRecord) -> Template {
    Template {
        name: record.name,
        version: record.version,
        subject: record.subject,
        text: record.text,
        html: record.html,
        layout: record.layout,
        created_at: record.created_at,
    }
}

fn check_name(name: &str) -> Result<(), Problem> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid("name", "1 to 64 of a-z, 0-9, -, _, ."))
    }
}

fn version_query(query: &HashMap<String, String>) -> Result<Option<u32>, Problem> {
    let mut version = None;
    for (name, value) in query {
        match name.as_str() {
            "version" => {
                version = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|v| *v >= 1)
                        .ok_or_else(|| Problem::malformed("version: a number from 1"))?,
                );
            }
            other => {
                return Err(Problem::malformed(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    Ok(version)
}

/// A template that did not render: 422, naming the variable or part.
fn template_problem(error: TemplateError) -> Problem {
    let field = match &error {
        TemplateError::Undefined { name, .. } => format!("variables.{name}"),
        TemplateError::Variables => "variables".to_owned(),
        other => format!("template.{}", other.part()),
    };
    invalid(&field, error.to_string())
}

fn invalid(field: &str, message: impl Into<String>) -> Problem {
    Problem::validation(vec![FieldError {
        field: field.to_owned(),
        message: message.into(),
    }])
}

fn not_found(name: &str) -> Problem {
    let mut problem = Problem::not_found();
    problem.detail = format!("no template named {name:?}");
    problem
}
