//! The Create Secret panels, one per type: name, description, tags, master key, first version
//! id; for Generic the value; for the managed types the sub-type, the target, create mode (the
//! target's family makes the accounts) or import mode (a credential given as its JSON value),
//! the options the families declare for `secret create` (account, database, privilege,
//! password rules…, shown as the family names them, never interpreted here), and automatic
//! rotation with the type's bounds. Each field is checked as the CLI checks it (the same
//! parsers), and a refusal is shown next to its field; then the secret is made through the
//! same calls as `rotor secret create` (`targets::create_secret` on a target).

use std::collections::HashMap;

use super::form::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use rotators::family::{OptionArg, OptionScope, OptionSpec, OptionValue};
use rotators::{Options, SecretKind, SecretType, SecretValue, Source, SubType};
use serde::Deserialize;

use super::layout::{self, csrf_field};
use super::session::{self, Active};
use super::{forbidden, sees_target, Console};
use crate::model::{RotationPolicy, RotationSchedule, SecretName, Tag, VersionId};
use crate::policy::Action;
use crate::store::NewSecret;

/// `?type=Rds`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CreateQuery {
    #[serde(default, rename = "type")]
    ty: String,
}

/// A form's fields by name (the families' options are `opt-NAME`).
type Fields = HashMap<String, String>;

/// Errors by field name.
type Errors = Vec<(&'static str, String)>;

fn type_of(text: &str) -> SecretType {
    text.parse().unwrap_or(SecretType::Generic)
}

/// The options families declare for `secret create`, each name once.
fn create_options(console: &Console) -> Vec<OptionSpec> {
    let mut seen = Vec::new();
    for family in console.engine.registry().families() {
        for spec in family.options() {
            let offered = matches!(spec.arg, OptionArg::Value { .. } | OptionArg::Flag);
            if spec.scope == OptionScope::SecretCreate
                && offered
                && !seen.iter().any(|s: &OptionSpec| s.name == spec.name)
            {
                seen.push(*spec);
            }
        }
    }
    seen
}

/// `GET /console/create?type=…`.
pub(super) async fn page(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<CreateQuery>,
) -> Response {
    let active = match session::require(&console, &headers).await {
        Ok(a) => a,
        Err(login) => return login,
    };
    let ty = type_of(&q.ty);
    panel(
        &console,
        &active,
        ty,
        &Fields::new(),
        &Errors::new(),
        StatusCode::OK,
    )
    .await
}

fn error_for<'a>(errors: &'a Errors, field: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, m)| m.as_str())
}

fn field_error(errors: &Errors, field: &str) -> Markup {
    html! {
        @if let Some(e) = error_for(errors, field) { span.field-error role="alert" data-field=(field) { (e) } }
    }
}

async fn panel(
    console: &Console,
    active: &Active,
    ty: SecretType,
    fields: &Fields,
    errors: &Errors,
    status: StatusCode,
) -> Response {
    let value = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    let managed = ty != SecretType::Generic;
    let keys = console.store.list_keys().await.unwrap_or_default();
    let targets: Vec<_> = console
        .store
        .list_targets()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|t| sees_target(&active.policy, &t.name))
        .filter(|t| {
            console
                .engine
                .registry()
                .target_kind(&t.kind)
                .is_some_and(|(family, spec)| {
                    ty.sub_types()
                        .iter()
                        .map(|s| Some(*s))
                        .chain([None])
                        .any(|sub| {
                            SecretKind::new(ty, sub)
                                .is_ok_and(|kind| family.serves(spec.name, kind))
                        })
                })
        })
        .collect();
    let bounds = ty.rotation_bounds().map(|(min, max)| {
        format!(
            "{} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )
    });
    let body = html! {
        nav.tabs {
            @for t in SecretType::ALL {
                a href=(format!("/console/create?type={}", t.as_str())) class=[(t == ty).then_some("current")] data-type=(t.as_str()) { (t.as_str()) }
            }
        }
        @if let Some(e) = error_for(errors, "form") { p.error role="alert" { (e) } }
        form.panel.create method="post" action="/console/create" {
            (csrf_field(active))
            input type="hidden" name="type" value=(ty.as_str());
            label { "Name" input name="name" value=(value("name")) maxlength="192" required; (field_error(errors, "name")) }
            @if !ty.sub_types().is_empty() {
                label { "Sub-type" select name="sub_type" {
                    @for s in ty.sub_types() {
                        option value=(s.as_str()) selected[value("sub_type") == s.as_str()] { (s.as_str()) }
                    }
                } (field_error(errors, "sub_type")) }
            }
            @if managed {
                label { "Target" select name="target" {
                    option value="" { "— choose —" }
                    @for t in &targets {
                        option value=(t.name) selected[value("target") == t.name] { (t.name) " (" (t.kind) ")" }
                    }
                } (field_error(errors, "target")) }
                fieldset {
                    legend { "Credentials" }
                    p.hint { "Leave the value empty to have rotor create the accounts on the target (create mode), or give the credential in use as its JSON value (import mode)." }
                    @for spec in create_options(console) {
                        @let key = format!("opt-{}", spec.name);
                        @match spec.arg {
                            OptionArg::Flag => {
                                label.check { input type="checkbox" name=(key) checked[!value(&key).is_empty()]; (spec.name) }
                                p.hint { (spec.help) }
                            }
                            _ => {
                                label { (spec.name) input name=(key) value=(value(&key)) maxlength="256"; (field_error(errors, spec.name)) }
                                p.hint { (spec.help) }
                            }
                        }
                    }
                }
            }
            label {
                @if managed { "Value to import (JSON, optional)" } @else { "Value" }
                textarea name="value" rows="4" maxlength="40000" required[!managed] { (value("value")) }
                (field_error(errors, "value"))
            }
            label { "First version id (default v1)" input name="version_id" value=(value("version_id")) maxlength="64"; (field_error(errors, "version_id")) }
            label { "Master key" select name="key" {
                @for k in &keys { option value=(k.key_id) selected[value("key") == k.key_id] { (k.key_id) } }
            } (field_error(errors, "key")) }
            label { "Tags (key=value, one per line)" textarea name="tags" rows="3" maxlength="6000" { (value("tags")) } (field_error(errors, "tags")) }
            label { "Description" input name="description" value=(value("description")) maxlength="1024"; (field_error(errors, "description")) }
            @if let Some(b) = &bounds {
                label.check { input type="checkbox" name="rotation" checked[!value("rotation").is_empty()]; "Automatic rotation" }
                label { (format!("Interval ({b})")) input name="interval" value=(value("interval")) placeholder="7d" maxlength="40"; (field_error(errors, "interval")) }
            }
            button type="submit" { "Create secret" }
        }
    };
    layout::page_with(
        status,
        &format!("Create a {} secret", ty.as_str()),
        Some(active),
        "create",
        body,
    )
}

/// `POST /console/create`.
pub(super) async fn submit(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let fields: Fields = pairs.into_iter().collect();
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    let active = match session::require_change(&console, &headers, get("_csrf")).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let ty = type_of(get("type"));
    let checked = check(&console, &active, ty, &fields);
    let (new, target, source, options) = match checked {
        Ok(parts) => parts,
        Err(Refusal::Forbidden(action, name)) => return forbidden(action, &name),
        Err(Refusal::Fields(errors)) => {
            return panel(
                &console,
                &active,
                ty,
                &fields,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    let name = new.name.clone();
    let store = console.store_for(&active.user);
    let registry = console.engine.registry();
    let created = match &target {
        Some(t) => crate::targets::create_secret(&store, registry, new, t, source, &options).await,
        None => store.create_secret(new).await,
    };
    match created {
        Ok(_) => {
            console.changed(&name);
            super::actions::done(&name, super::details::Done::Created)
        }
        Err(e) => {
            let errors = vec![("form", e.to_string())];
            panel(
                &console,
                &active,
                ty,
                &fields,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

enum Refusal {
    Forbidden(Action, String),
    Fields(Errors),
}

/// Every field as the CLI's parsers read it; the user's rules for the name and the target.
fn check(
    console: &Console,
    active: &Active,
    ty: SecretType,
    fields: &Fields,
) -> Result<(NewSecret, Option<String>, Source, Options), Refusal> {
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    let mut errors = Errors::new();
    let name = SecretName::parse(get("name").trim())
        .map_err(|e| errors.push(("name", e.to_string())))
        .ok();
    if let Some(n) = &name {
        if !active.policy.allows(Action::CreateSecret, n.as_str()) {
            return Err(Refusal::Forbidden(
                Action::CreateSecret,
                n.as_str().to_owned(),
            ));
        }
    }
    let sub = match get("sub_type") {
        "" => None,
        s => s
            .parse::<SubType>()
            .map_err(|e| errors.push(("sub_type", e.to_string())))
            .ok(),
    };
    let kind = SecretKind::new(ty, sub)
        .map_err(|e| errors.push(("sub_type", e.to_string())))
        .ok();
    let managed = ty != SecretType::Generic;
    let target = match (managed, get("target")) {
        (false, _) => None,
        (true, "") => {
            errors.push(("target", "choose the target its credentials live on".into()));
            None
        }
        (true, t) if !sees_target(&active.policy, t) => {
            return Err(Refusal::Forbidden(
                Action::DescribeSecret,
                crate::store::admin_secret_name(t),
            ))
        }
        (true, t) => Some(t.to_owned()),
    };
    let raw_value = get("value");
    if !managed && raw_value.is_empty() {
        errors.push(("value", "give the secret's value".into()));
    }
    let mut tags = Vec::new();
    for line in get("tags").lines().map(str::trim).filter(|l| !l.is_empty()) {
        match Tag::parse_pair(line) {
            Ok(t) => tags.push(t),
            Err(e) => errors.push(("tags", e.to_string())),
        }
    }
    if let Err(e) = crate::model::check_tags(&tags) {
        errors.push(("tags", e.to_string()));
    }
    let description = get("description").to_owned();
    if let Err(e) = crate::model::check_description(&description) {
        errors.push(("description", e.to_string()));
    }
    let version_id = match get("version_id").trim() {
        "" => None,
        v => VersionId::parse(v)
            .map_err(|e| errors.push(("version_id", e.to_string())))
            .ok(),
    };
    let rotation = if !get("rotation").is_empty() && ty.rotation_bounds().is_some() {
        match crate::model::parse_duration(get("interval")) {
            Ok(d) => {
                let schedule = RotationSchedule::Interval(d);
                if let Some(k) = kind {
                    if let Err(e) = schedule.check_for(k, chrono::Utc::now()) {
                        errors.push(("interval", e.to_string()));
                    }
                }
                Some(RotationPolicy {
                    schedule,
                    jitter: None,
                    rotate_now: false,
                })
            }
            Err(e) => {
                errors.push(("interval", e.to_string()));
                None
            }
        }
    } else {
        None
    };
    let mut options = Options::new();
    if managed {
        for spec in create_options(console) {
            let given = get(&format!("opt-{}", spec.name)).trim();
            match spec.arg {
                OptionArg::Flag if !given.is_empty() => {
                    options.insert(spec.name, OptionValue::Flag);
                }
                OptionArg::Value { .. } if !given.is_empty() => {
                    if given.chars().any(char::is_control) {
                        errors.push((spec.name, "control characters are not allowed".into()));
                    }
                    options.insert(spec.name, OptionValue::Text(given.to_owned()));
                }
                _ => {}
            }
        }
    }
    if let (Some(k), Some(n), Some(_)) = (kind, &name, &rotation) {
        if let Err(e) =
            crate::engine::check_can_rotate(console.engine.registry(), n, k, target.as_deref())
        {
            errors.push(("interval", e.to_string()));
        }
    }
    let (Some(name), Some(kind), true) = (name, kind, errors.is_empty()) else {
        return Err(Refusal::Fields(errors));
    };
    let source = match (&target, raw_value.is_empty()) {
        (Some(_), true) => Source::Create,
        _ => Source::Import(SecretValue::from(raw_value)),
    };
    let value = match &source {
        Source::Import(v) if target.is_none() => v.clone(),
        _ => SecretValue::new(vec![]),
    };
    let mut new = NewSecret::new(name, kind, value);
    new.version_id = version_id;
    new.tags = tags;
    new.description = description;
    new.key = Some(get("key").to_owned()).filter(|k| !k.is_empty());
    new.rotation = rotation;
    Ok((new, target, source, options))
}
