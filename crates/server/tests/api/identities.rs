//! The admin identity API through the Kratos SDK: create, read, list,
//! replace, patch, delete.

use ory_kratos_client::apis::Error as SdkError;
use ory_kratos_client::apis::identity_api;
use ory_kratos_client::models::{
    CreateIdentityBody, IdentityPatch, IdentityWithCredentials, IdentityWithCredentialsPassword,
    IdentityWithCredentialsPasswordConfig, JsonPatch, PatchIdentitiesBody, UpdateIdentityBody,
    VerifiableIdentityAddress, identity::StateEnum, update_identity_body, verifiable_identity_address,
};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};
use crate::on_both_databases;

on_both_databases!(
    identity_lifecycle_through_the_sdk,
    passwords_are_hashed_and_imports_verified,
    list_pages_follow_link_headers_and_filters,
    duplicate_identifiers_conflict_and_write_nothing,
    invalid_traits_name_the_field,
    verified_addresses_can_be_imported_and_patched,
    batch_import_reports_each_item,
);

fn body_with_password(email: &str, password: Option<&str>, hashed: Option<&str>) -> CreateIdentityBody {
    let mut body =
        CreateIdentityBody::new("default".into(), json!({"email": email, "name": {"first": "Ada"}}));
    let mut config = IdentityWithCredentialsPasswordConfig::new();
    config.password = password.map(str::to_string);
    config.hashed_password = hashed.map(str::to_string);
    let mut creds = IdentityWithCredentials::new();
    creds.password = Some(Box::new(IdentityWithCredentialsPassword { config: Some(Box::new(config)) }));
    body.credentials = Some(Box::new(creds));
    body
}

fn status_of<T>(err: SdkError<T>) -> u16 {
    match err {
        SdkError::ResponseError(r) => r.status.as_u16(),
        other => panic!("expected an HTTP error, got {other}"),
    }
}

async fn count_identities(app: &TestApp) -> usize {
    let all: Vec<Value> =
        app.http.get(app.admin_path("/admin/identities")).send().await.unwrap().json().await.unwrap();
    all.len()
}

async fn identity_lifecycle_through_the_sdk(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = body_with_password("Ada@Example.com", Some("correct horse battery"), None);
    body.metadata_public = Some(Some(json!({"plan": "pro"})));
    body.metadata_admin = Some(Some(json!({"note": "vip"})));
    let created = identity_api::create_identity(&app.admin, Some(body)).await.unwrap();
    assert_eq!(created.schema_id, "default");
    assert_eq!(created.state, Some(StateEnum::Active));
    assert!(created.schema_url.ends_with("/schemas/ZGVmYXVsdA"), "{}", created.schema_url);
    let creds = created.credentials.as_ref().unwrap();
    assert_eq!(creds["password"].identifiers.as_deref(), Some(&["ada@example.com".to_string()][..]));
    assert_eq!(creds["password"].config, Some(json!({})), "config hidden unless asked for");
    let addresses = created.verifiable_addresses.as_ref().unwrap();
    assert_eq!(addresses[0].value, "ada@example.com");
    assert!(!addresses[0].verified);
    assert_eq!(created.recovery_addresses.as_ref().unwrap().len(), 1);

    let fetched = identity_api::get_identity(&app.admin, &created.id, None).await.unwrap();
    assert_eq!(fetched.traits, created.traits);
    assert_eq!(fetched.metadata_admin, Some(Some(json!({"note": "vip"}))));

    // Replace: traits change, metadata not given becomes null, the identifier follows.
    let mut update = UpdateIdentityBody::new(
        "default".into(),
        update_identity_body::StateEnum::Inactive,
        json!({"email": "grace@example.com"}),
    );
    update.metadata_public = Some(Some(json!({"plan": "free"})));
    let updated = identity_api::update_identity(&app.admin, &created.id, Some(update)).await.unwrap();
    assert_eq!(updated.state, Some(StateEnum::Inactive));
    assert_eq!(updated.metadata_admin, None);
    let creds = updated.credentials.as_ref().unwrap();
    assert_eq!(creds["password"].identifiers.as_deref(), Some(&["grace@example.com".to_string()][..]));
    assert_eq!(updated.verifiable_addresses.as_ref().unwrap()[0].value, "grace@example.com");

    // Patch: one trait replaced, the state back to active.
    let mut op = JsonPatch::new("replace".into(), "/traits/email".into());
    op.value = Some(Some(json!("hopper@example.com")));
    let mut state = JsonPatch::new("replace".into(), "/state".into());
    state.value = Some(Some(json!("active")));
    let patched = identity_api::patch_identity(&app.admin, &created.id, Some(vec![op, state])).await.unwrap();
    assert_eq!(patched.traits, Some(json!({"email": "hopper@example.com"})));
    assert_eq!(patched.state, Some(StateEnum::Active));

    // Immutable paths are refused.
    let id_op = JsonPatch { value: Some(Some(json!("x"))), ..JsonPatch::new("replace".into(), "/id".into()) };
    let err = identity_api::patch_identity(&app.admin, &created.id, Some(vec![id_op])).await.unwrap_err();
    assert_eq!(status_of(err), 400);

    identity_api::delete_identity(&app.admin, &created.id).await.unwrap();
    let err = identity_api::get_identity(&app.admin, &created.id, None).await.unwrap_err();
    assert_eq!(status_of(err), 404);
    let err = identity_api::delete_identity(&app.admin, &created.id).await.unwrap_err();
    assert_eq!(status_of(err), 404);
    app.stop().await;
}

async fn passwords_are_hashed_and_imports_verified(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = identity_api::create_identity(
        &app.admin,
        Some(body_with_password("h@example.com", Some("s3cret-pass"), None)),
    )
    .await
    .unwrap();
    let with_config =
        identity_api::get_identity(&app.admin, &created.id, Some(vec!["password".into()])).await.unwrap();
    let config = with_config.credentials.unwrap()["password"].config.clone().unwrap();
    let hash = config["hashed_password"].as_str().unwrap().to_string();
    assert!(hash.starts_with("$2a$04$"), "{hash}");
    assert!(latchkey_hash::verify_password(b"s3cret-pass", &hash).unwrap());
    assert!(!latchkey_hash::verify_password(b"wrong", &hash).unwrap());

    // An imported hash is stored as given.
    let imported = "$pbkdf2-sha256$i=1000,l=32$c2FsdHNhbHQ$5f3/5LoJzdWb8OTM9yScLEPLRKmR/w768Zaw3jbyPhQ";
    let created = identity_api::create_identity(
        &app.admin,
        Some(body_with_password("i@example.com", None, Some(imported))),
    )
    .await
    .unwrap();
    let fetched =
        identity_api::get_identity(&app.admin, &created.id, Some(vec!["password".into()])).await.unwrap();
    assert_eq!(fetched.credentials.unwrap()["password"].config.clone().unwrap()["hashed_password"], imported);
    // Generated independently with Python's hashlib.pbkdf2_hmac.
    assert!(latchkey_hash::verify_password(b"imported-pass", imported).unwrap());

    // Unknown formats and abusive costs are refused before anything is written.
    let before = count_identities(&app).await;
    for bad in ["plaintext", "$2a$16$abcdefghijklmnopqrstuuYTrPbwnd8m.xpaTb/4FmIBcLkKRkL6G"] {
        let err = identity_api::create_identity(
            &app.admin,
            Some(body_with_password("j@example.com", None, Some(bad))),
        )
        .await
        .unwrap_err();
        assert_eq!(status_of(err), 400, "{bad}");
    }
    assert_eq!(count_identities(&app).await, before);
    app.stop().await;
}

async fn list_pages_follow_link_headers_and_filters(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let body =
            CreateIdentityBody::new("default".into(), json!({"email": format!("user{n}@example.com")}));
        ids.push(identity_api::create_identity(&app.admin, Some(body)).await.unwrap().id);
    }
    ids.sort();

    let mut url = app.admin_path("/admin/identities?page_size=2");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let response = app.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let link = response.headers()["link"].to_str().unwrap().to_string();
        assert!(link.contains("rel=\"first\""), "{link}");
        let page: Vec<Value> = response.json().await.unwrap();
        assert!(page.iter().all(|i| i.get("credentials").is_none()));
        seen.extend(page.iter().map(|i| i["id"].as_str().unwrap().to_string()));
        pages += 1;
        let next = link.split(',').find(|l| l.contains("rel=\"next\""));
        match next {
            Some(next) => {
                let path = next.split(['<', '>']).nth(1).unwrap();
                assert!(path.starts_with("/admin/identities?page_size=2&page_token="), "{path}");
                url = app.admin_path(path);
            }
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);

    // The SDK's list call and its credentials_identifier filter.
    let found = identity_api::list_identities(
        &app.admin,
        None,
        None,
        None,
        None,
        None,
        None,
        Some("USER3@example.com"),
        None,
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].traits.as_ref().unwrap()["email"], "user3@example.com");
    let by_ids = identity_api::list_identities(
        &app.admin,
        None,
        None,
        None,
        None,
        None,
        Some(ids[..2].to_vec()),
        None,
        None,
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(by_ids.len(), 2);

    for bad in ["page_size=0", "page_size=abc", "page_token=not-a-uuid", "include_credential=magic", "page=2"]
    {
        let response =
            app.http.get(app.admin_path(&format!("/admin/identities?{bad}"))).send().await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    app.stop().await;
}

async fn duplicate_identifiers_conflict_and_write_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = || body_with_password("dup@example.com", Some("a-long-password"), None);
    identity_api::create_identity(&app.admin, Some(body())).await.unwrap();
    let response = app
        .http
        .post(app.admin_path("/admin/identities"))
        .json(&json!({
            "schema_id": "default", "traits": {"email": "DUP@example.com"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], 409);
    assert_eq!(
        error["error"]["reason"],
        "This identity conflicts with another identity that already exists."
    );
    assert_eq!(count_identities(&app).await, 1);

    // Updating another identity onto a taken identifier fails whole.
    let other =
        identity_api::create_identity(&app.admin, Some(body_with_password("other@example.com", None, None)))
            .await
            .unwrap();
    let update = UpdateIdentityBody::new(
        "default".into(),
        update_identity_body::StateEnum::Active,
        json!({"email": "dup@example.com"}),
    );
    let err = identity_api::update_identity(&app.admin, &other.id, Some(update)).await.unwrap_err();
    assert_eq!(status_of(err), 409);
    let unchanged = identity_api::get_identity(&app.admin, &other.id, None).await.unwrap();
    assert_eq!(unchanged.traits, Some(json!({"email": "other@example.com", "name": {"first": "Ada"}})));
    app.stop().await;
}

async fn invalid_traits_name_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    for (traits, field) in [
        (json!({"email": "not-an-email"}), "#/traits/email"),
        (json!({"email": "a@b.co", "shoe_size": 44}), "#/traits"),
        (json!({"email": 12}), "#/traits/email"),
    ] {
        let response = app
            .http
            .post(app.admin_path("/admin/identities"))
            .json(&json!({"schema_id": "default", "traits": traits}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        let reason = error["error"]["reason"].as_str().unwrap();
        assert!(reason.contains(field), "{reason} should name {field}");
        assert_eq!(error["error"]["message"], "The request was malformed or contained invalid parameters");
    }
    let response = app
        .http
        .post(app.admin_path("/admin/identities"))
        .json(&json!({"schema_id": "nope", "traits": {"email": "a@b.co"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(count_identities(&app).await, 0);
    app.stop().await;
}

async fn verified_addresses_can_be_imported_and_patched(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = CreateIdentityBody::new("default".into(), json!({"email": "v@example.com"}));
    let mut address = VerifiableIdentityAddress::new(
        "completed".into(),
        "v@example.com".into(),
        true,
        verifiable_identity_address::ViaEnum::Email,
    );
    address.verified_at = Some("2024-05-01T10:00:00Z".into());
    body.verifiable_addresses = Some(vec![address]);
    let created = identity_api::create_identity(&app.admin, Some(body)).await.unwrap();
    let address = &created.verifiable_addresses.as_ref().unwrap()[0];
    assert!(address.verified);
    assert_eq!(address.status, "completed");
    assert!(address.verified_at.as_deref().unwrap().starts_with("2024-05-01T10:00:00"));

    // A trait change drops the old address; the new one starts unverified.
    let mut op = JsonPatch::new("replace".into(), "/traits/email".into());
    op.value = Some(Some(json!("w@example.com")));
    let patched = identity_api::patch_identity(&app.admin, &created.id, Some(vec![op])).await.unwrap();
    let address = &patched.verifiable_addresses.as_ref().unwrap()[0];
    assert_eq!(
        (address.value.as_str(), address.verified, address.status.as_str()),
        ("w@example.com", false, "pending")
    );

    // And a patch can mark it verified (import).
    let mut op = JsonPatch::new("replace".into(), "/verifiable_addresses/0/verified".into());
    op.value = Some(Some(json!(true)));
    let patched = identity_api::patch_identity(&app.admin, &created.id, Some(vec![op])).await.unwrap();
    let address = &patched.verifiable_addresses.as_ref().unwrap()[0];
    assert!(address.verified && address.status == "completed" && address.verified_at.is_some());
    app.stop().await;
}

async fn batch_import_reports_each_item(backend: Backend) {
    let app = spawn_app(backend).await;
    identity_api::create_identity(
        &app.admin,
        Some(CreateIdentityBody::new("default".into(), json!({"email": "taken@example.com"}))),
    )
    .await
    .unwrap();
    let mut patches = Vec::new();
    for (n, email) in
        ["new1@example.com", "taken@example.com", "not-an-email", "new2@example.com"].iter().enumerate()
    {
        let mut patch = IdentityPatch::new();
        patch.create = Some(Box::new(body_with_password(email, None, None)));
        patch.patch_id = Some(format!("00000000-0000-4000-8000-00000000000{n}"));
        patches.push(patch);
    }
    let body = PatchIdentitiesBody { identities: Some(patches) };
    let response = identity_api::batch_patch_identities(&app.admin, Some(body)).await.unwrap();
    let results = response.identities.unwrap();
    let actions: Vec<_> = results.iter().map(|r| r.action.unwrap()).collect();
    use ory_kratos_client::models::identity_patch_response::ActionEnum::{Create, Error};
    assert_eq!(actions, vec![Create, Error, Error, Create]);
    assert_eq!(results[1].patch_id.as_deref(), Some("00000000-0000-4000-8000-000000000001"));
    let error = results[1].error.clone().flatten().unwrap();
    assert_eq!(error["code"], 409);
    assert_eq!(error["reason"], "This identity conflicts with another identity that already exists.");
    let created =
        identity_api::get_identity(&app.admin, results[3].identity.as_ref().unwrap(), None).await.unwrap();
    assert_eq!(created.traits.unwrap()["email"], "new2@example.com");
    assert_eq!(count_identities(&app).await, 3);

    let too_many =
        json!({"identities": (0..1001).map(|_| json!({"create": {"traits": {}}})).collect::<Vec<_>>()});
    let response = app.http.patch(app.admin_path("/admin/identities")).json(&too_many).send().await.unwrap();
    assert_eq!(response.status(), 400);
    app.stop().await;
}
